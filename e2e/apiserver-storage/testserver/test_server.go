// Package testserver is oxcd's drop-in replacement for k8s.io/apiserver's
// pkg/storage/etcd3/testserver: e2e/apiserver-storage/run copies it over the upstream file, so
// that apiserver's own storage tests (pkg/storage/etcd3, pkg/storage/cacher) run against an
// external server binary instead of an embedded etcd. Same exported names and signatures.
//
// The binary is $STORAGE_TEST_BIN (oxcd, or etcd for reference); both take etcd's flags. Each
// RunEtcd starts a fresh member with an empty data dir on free 127.0.0.1 ports, waits until it
// answers, and kills it when the test ends. $STORAGE_TEST_EXTRA_FLAGS (space-separated) is
// appended to its flags. Its output goes to a log file that is printed when the test failed.
package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

// NewTestConfig returns the settings a test may adjust before RunEtcd: only Dir and
// WatchProgressNotifyInterval are passed on to the server.
func NewTestConfig(t testing.TB) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	return cfg
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	var ports []int
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve a port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
	return ports
}

// RunEtcd starts a member of $STORAGE_TEST_BIN with cfg's data dir and watch progress interval
// (or defaults if cfg is nil) and returns a client wrapped in the tests' call recorders.
func RunEtcd(t testing.TB, cfg *embed.Config) *kubernetes.Client {
	t.Helper()
	bin := os.Getenv("STORAGE_TEST_BIN")
	if bin == "" {
		t.Fatal("STORAGE_TEST_BIN is not set (the oxcd or etcd binary to test)")
	}
	if cfg == nil {
		cfg = NewTestConfig(t)
	}
	ports := freePorts(t, 3)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	args := []string{
		"--name", "default",
		"--data-dir", filepath.Join(cfg.Dir, "member"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
	}
	// Zero (embed's default) means the server's default, 10m.
	if cfg.WatchProgressNotifyInterval > 0 {
		args = append(args, "--watch-progress-notify-interval", cfg.WatchProgressNotifyInterval.String())
	}
	args = append(args, strings.Fields(os.Getenv("STORAGE_TEST_EXTRA_FLAGS"))...)

	logPath := filepath.Join(cfg.Dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The member dies with the test binary, even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) > 20 {
					lines = lines[len(lines)-20:]
				}
				t.Logf("last lines of the server log:\n%s", strings.Join(lines, "\n"))
			}
		}
	})

	c, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{client},
		DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithBlock()},
		Logger:      zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)).Named("etcd-client"),
	})
	if err != nil {
		t.Fatalf("connect to %s: %v", client, err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx, client)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s did not answer Status in 30 s: %v", bin, client, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.KV = storagetesting.NewKVRecorder(c.KV)
	c.Kubernetes = storagetesting.NewKubernetesRecorder(c.Kubernetes)
	return c
}
