// Command proxyless-client is a grpc-go client of the xDS-served inference service: it resolves an
// xds:/// target through the bootstrap's xDS server, calls inference.GRPCInferenceService/ServerMetadata
// a number of times per round on one channel, and prints one JSON line per event on stdout, so a test
// can count which backend served each call and whether the channel ever reconnected.
//
// Events: {"event":"config","clusters":[...]} for every service config the xds resolver produced;
// {"event":"ready"} once the channel is first READY; {"event":"round",...} after each round; and
// {"event":"done",...} last. A setup failure prints {"event":"fatal","error":...} and exits 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds resolver and the xDS LB policies
)

const serverMetadataMethod = "/inference.GRPCInferenceService/ServerMetadata"

// bootstrapEnv is read by grpc-go when its packages initialise, before main runs.
const bootstrapEnv = "GRPC_XDS_BOOTSTRAP"

type options struct {
	target       string
	calls        int
	concurrency  int
	rounds       int
	waitFile     string
	callTimeout  time.Duration
	readyTimeout time.Duration
	waitTimeout  time.Duration
}

func main() {
	var o options
	bootstrap := flag.String("bootstrap", "", "gRPC xDS bootstrap file (default: $"+bootstrapEnv+")")
	flag.StringVar(&o.target, "target", "", "target to call, xds:///NAME")
	flag.IntVar(&o.calls, "calls", 100, "calls per round")
	flag.IntVar(&o.concurrency, "concurrency", 4, "calls in flight at once")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of calls on the same channel")
	flag.StringVar(&o.waitFile, "wait-file", "", "before every round after the first, wait until this file exists")
	flag.DurationVar(&o.callTimeout, "call-timeout", 5*time.Second, "deadline of each call")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 30*time.Second, "how long the channel may take to become READY")
	flag.DurationVar(&o.waitTimeout, "wait-timeout", 60*time.Second, "how long to wait for the wait file")
	flag.Parse()

	if *bootstrap != "" && os.Getenv(bootstrapEnv) != *bootstrap {
		reexecWithBootstrap(*bootstrap)
	}
	if err := validate(o); err != nil {
		fatal(err)
	}
	if err := run(o); err != nil {
		fatal(err)
	}
}

func validate(o options) error {
	switch {
	case os.Getenv(bootstrapEnv) == "":
		return errors.New("no bootstrap: pass -bootstrap or set " + bootstrapEnv)
	case o.target == "":
		return errors.New("-target is required")
	case o.calls < 1 || o.concurrency < 1 || o.rounds < 1:
		return errors.New("-calls, -concurrency and -rounds must be at least 1")
	case o.rounds > 1 && o.waitFile == "":
		return errors.New("-rounds above 1 needs -wait-file")
	}
	return nil
}

// reexecWithBootstrap starts this program again with the bootstrap in the environment, because grpc-go
// reads the variable once at start-up and has no public way to take a bootstrap afterwards.
func reexecWithBootstrap(path string) {
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	env := append(os.Environ(), bootstrapEnv+"="+path)
	fatal(syscall.Exec(self, os.Args, env))
}

func run(o options) error {
	out := newEventWriter()
	xdsBuilder := resolver.Get("xds")
	if xdsBuilder == nil {
		return errors.New("the xds resolver is not registered")
	}
	observer := observingResolver{Builder: xdsBuilder, onClusters: func(clusters []string) {
		out.emit(map[string]any{"event": "config", "clusters": clusters})
	}}
	conn, err := grpc.NewClient(o.target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(observer),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
	)
	if err != nil {
		return err
	}
	defer conn.Close()

	watch := watchStates(conn)
	if err := watch.awaitReady(o.readyTimeout); err != nil {
		return err
	}
	out.emit(map[string]any{"event": "ready"})

	for round := 1; round <= o.rounds; round++ {
		if round > 1 {
			if err := awaitFile(o.waitFile, o.waitTimeout); err != nil {
				return err
			}
		}
		r := callRound(conn, o)
		out.emit(map[string]any{
			"event": "round", "round": round, "calls": o.calls, "counts": r.counts, "versions": r.versions,
			"errors": r.errors, "errorSamples": r.samples, "readyLeft": watch.readyLeft(),
		})
	}
	out.emit(map[string]any{"event": "done", "readyLeft": watch.readyLeft(), "states": watch.history()})
	return nil
}

// roundResult counts answers per backend name (and version) and failures per status code.
type roundResult struct {
	mu       sync.Mutex
	counts   map[string]int
	versions map[string]int
	errors   map[string]int
	samples  []string
}

const maxErrorSamples = 5

func (r *roundResult) record(md serverMetadata, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors[status.Code(err).String()]++
		if len(r.samples) < maxErrorSamples {
			r.samples = append(r.samples, err.Error())
		}
		return
	}
	r.counts[md.name]++
	r.versions[md.version]++
}

func callRound(conn *grpc.ClientConn, o options) *roundResult {
	r := &roundResult{counts: map[string]int{}, versions: map[string]int{}, errors: map[string]int{}, samples: []string{}}
	next := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				r.record(callServerMetadata(conn, o.callTimeout))
			}
		}()
	}
	for i := 0; i < o.calls; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return r
}

func callServerMetadata(conn *grpc.ClientConn, timeout time.Duration) (serverMetadata, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// inference.ServerMetadataRequest has no fields: its encoding is empty.
	reply := &rawMessage{}
	if err := conn.Invoke(ctx, serverMetadataMethod, &rawMessage{}, reply); err != nil {
		return serverMetadata{}, err
	}
	return decodeServerMetadata(reply.bytes)
}

// awaitFile polls for the file a test creates once it is ready for the next round.
func awaitFile(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventWriter prints one JSON object per line; lines from several goroutines never interleave.
type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newEventWriter() *eventWriter { return &eventWriter{enc: json.NewEncoder(os.Stdout)} }

func (w *eventWriter) emit(event map[string]any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.enc.Encode(event)
}

func fatal(err error) {
	newEventWriter().emit(map[string]any{"event": "fatal", "error": err.Error()})
	os.Exit(2)
}
