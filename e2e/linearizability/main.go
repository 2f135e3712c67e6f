// Command linearizability checks a client history recorded by oxcd's fault tests with
// porcupine (the checker etcd's robustness tests use), against a model of etcd keys: put,
// get, delete and a compare-and-swap txn, each key its own register.
//
//	linearizability -history history.json [-visualize out.html] [-timeout 60s]
//
// An operation whose outcome the client never learnt has "return": -1: it may have taken
// effect at any point after its call, or not at all (placed last, where nothing observes it).
// Exit status 0: linearizable; 1: a violation (details and a visualization written); 2: the
// checker could not decide or could not run.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/anishathalye/porcupine"
)

// op is one recorded client operation.
type op struct {
	Client int    `json:"client"`
	Kind   string `json:"op"` // put, get, delete, cas
	Key    string `json:"key"`
	Value  string `json:"value"`  // put and cas: the value written
	Expect string `json:"expect"` // cas: the value compared against ("" with expect_absent)
	// cas: compare that the key does not exist.
	ExpectAbsent bool  `json:"expect_absent"`
	Call         int64 `json:"call"`
	Return       int64 `json:"return"`
	// Outcomes: get: found and read; delete: deleted; cas: succeeded.
	Found     bool   `json:"found"`
	Read      string `json:"read"`
	Deleted   int64  `json:"deleted"`
	Succeeded bool   `json:"succeeded"`
}

type register struct {
	present bool
	value   string
}

func (r register) matches(o op) bool {
	if o.ExpectAbsent {
		return !r.present
	}
	return r.present && r.value == o.Expect
}

var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, h := range history {
			k := h.Input.(op).Key
			if _, seen := byKey[k]; !seen {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], h)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return register{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		r := state.(register)
		o := input.(op)
		unknown := output.(bool)
		switch o.Kind {
		case "put":
			return true, register{present: true, value: o.Value}
		case "get":
			if unknown {
				return true, r
			}
			return o.Found == r.present && (!o.Found || o.Read == r.value), r
		case "delete":
			if unknown {
				return true, register{}
			}
			return (o.Deleted == 1) == r.present, register{}
		case "cas":
			hit := r.matches(o)
			next := r
			if hit {
				next = register{present: true, value: o.Value}
			}
			if unknown {
				return true, next
			}
			return o.Succeeded == hit, next
		}
		return false, r
	},
	DescribeOperation: func(input, output interface{}) string {
		o := input.(op)
		unknown := output.(bool)
		suffix := ""
		if unknown {
			suffix = " -> ?"
		}
		switch o.Kind {
		case "put":
			return fmt.Sprintf("put(%s)%s", o.Value, suffix)
		case "get":
			if o.Found {
				return fmt.Sprintf("get -> %s%s", o.Read, suffix)
			}
			return "get -> none" + suffix
		case "delete":
			return fmt.Sprintf("delete -> %d%s", o.Deleted, suffix)
		default:
			return fmt.Sprintf("cas(%s => %s) -> %v%s", o.Expect, o.Value, o.Succeeded, suffix)
		}
	},
}

func main() {
	historyPath := flag.String("history", "", "JSON history file")
	visualize := flag.String("visualize", "", "write an HTML visualization here on a violation")
	timeout := flag.Duration("timeout", 60*time.Second, "give up (exit 2) after this long")
	flag.Parse()
	data, err := os.ReadFile(*historyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		os.Exit(2)
	}
	var ops []op
	if err := json.Unmarshal(data, &ops); err != nil {
		fmt.Fprintln(os.Stderr, "linearizability: bad history:", err)
		os.Exit(2)
	}
	history := make([]porcupine.Operation, 0, len(ops))
	unknown := 0
	for _, o := range ops {
		ret := o.Return
		if ret < 0 {
			ret = math.MaxInt64
			unknown++
		}
		history = append(history, porcupine.Operation{
			ClientId: o.Client,
			Input:    o,
			Call:     o.Call,
			Output:   o.Return < 0,
			Return:   ret,
		})
	}
	result, info := porcupine.CheckOperationsVerbose(model, history, *timeout)
	fmt.Printf("linearizability: %d operations (%d with unknown outcome): %s\n", len(ops), unknown, result)
	switch result {
	case porcupine.Ok:
		return
	case porcupine.Illegal:
		if *visualize != "" {
			if err := porcupine.VisualizePath(model, info, *visualize); err == nil {
				fmt.Println("linearizability: visualization in", *visualize)
			}
		}
		os.Exit(1)
	default:
		os.Exit(2)
	}
}
