package main

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func operations(ops []op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		ret := o.Return
		if ret < 0 {
			ret = 1 << 62
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: o, Call: o.Call, Output: o.Return < 0, Return: ret})
	}
	return out
}

func TestTheModelAcceptsLinearizableHistories(t *testing.T) {
	ok := []op{
		{Client: 0, Kind: "put", Key: "k", Value: "a", Call: 0, Return: 10},
		{Client: 1, Kind: "get", Key: "k", Call: 5, Return: 15, Found: true, Read: "a"},
		{Client: 1, Kind: "cas", Key: "k", Expect: "a", Value: "b", Call: 20, Return: 30, Succeeded: true},
		{Client: 0, Kind: "put", Key: "k", Value: "c", Call: 31, Return: -1},
		{Client: 2, Kind: "get", Key: "k", Call: 40, Return: 50, Found: true, Read: "b"},
		{Client: 2, Kind: "delete", Key: "k", Call: 60, Return: 70, Deleted: 1},
		{Client: 2, Kind: "get", Key: "k", Call: 80, Return: 90},
	}
	if !porcupine.CheckOperations(model, operations(ok)) {
		t.Fatal("a linearizable history was rejected")
	}
}

func TestTheModelRejectsStaleReadsAndLostWrites(t *testing.T) {
	stale := []op{
		{Client: 0, Kind: "put", Key: "k", Value: "a", Call: 0, Return: 10},
		{Client: 0, Kind: "put", Key: "k", Value: "b", Call: 20, Return: 30},
		// Starts after "b" was acknowledged, yet reads "a".
		{Client: 1, Kind: "get", Key: "k", Call: 40, Return: 50, Found: true, Read: "a"},
	}
	if porcupine.CheckOperations(model, operations(stale)) {
		t.Fatal("a stale read was accepted")
	}
	lost := []op{
		{Client: 0, Kind: "put", Key: "k", Value: "a", Call: 0, Return: 10},
		{Client: 1, Kind: "get", Key: "k", Call: 20, Return: 30},
	}
	if porcupine.CheckOperations(model, operations(lost)) {
		t.Fatal("a lost acknowledged write was accepted")
	}
	badCas := []op{
		{Client: 0, Kind: "put", Key: "k", Value: "a", Call: 0, Return: 10},
		{Client: 1, Kind: "cas", Key: "k", Expect: "x", Value: "b", Call: 20, Return: 30, Succeeded: true},
	}
	if porcupine.CheckOperations(model, operations(badCas)) {
		t.Fatal("a compare-and-swap that should have failed was accepted")
	}
}
