// Command xds-peer is the go-control-plane side of the xDS side-by-side: a SotW ADS server with go-control-
// plane's snapshot cache, serving the resources `flowgate render` printed. Every node of one Envoy cluster
// (node.cluster) shares one snapshot, as a fleet is served in production. A trigger (POST /switch on the
// control address, or SIGHUP) sets the next rendered file's snapshot, in the order given, then wraps.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"flowgate/bench/peers/internal/rendered"
)

// clusterHash groups nodes by node.cluster: one snapshot per fleet, not one per Envoy.
type clusterHash struct{}

func (clusterHash) ID(node *core.Node) string { return node.GetCluster() }

// switchReport is what a trigger answers: when it arrived and when the new snapshot was set.
type switchReport struct {
	Version          string `json:"version"`
	ReceivedUnixNano int64  `json:"receivedUnixNano"`
	SetUnixNano      int64  `json:"setUnixNano"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "xDS gRPC listen address")
	control := flag.String("control", "127.0.0.1:0", "HTTP control address (POST /switch)")
	initial := flag.String("resources", "", "rendered JSON served at start")
	var next []string
	flag.Func("next", "rendered JSON the next trigger switches to (repeat for a sequence; the trigger after the last returns to --resources)", func(f string) error {
		next = append(next, f)
		return nil
	})
	group := flag.String("group", "flowgate-bench", "node.cluster the snapshot is set for")
	flag.Parse()
	if *initial == "" {
		log.Fatal("give --resources FILE")
	}
	files := append([]string{*initial}, next...)
	// Both snapshots are built before serving, so a trigger measures the cache and the fan-out, not JSON parsing.
	snapshots := make([]*cachev3.Snapshot, 0, len(files))
	for _, f := range files {
		res, err := rendered.Load(f)
		if err != nil {
			log.Fatal(err)
		}
		snap, err := cachev3.NewSnapshot(res.Version, res.ByType)
		if err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		if err := snap.Consistent(); err != nil {
			log.Fatalf("%s: inconsistent snapshot: %v", f, err)
		}
		snapshots = append(snapshots, snap)
		log.Printf("loaded %s: version %s, %d resources", f, res.Version, res.Count())
	}

	ctx := context.Background()
	cache := cachev3.NewSnapshotCache(true, clusterHash{}, nil)
	if err := cache.SetSnapshot(ctx, *group, snapshots[0]); err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	current := 0
	trigger := func() switchReport {
		received := time.Now()
		mu.Lock()
		defer mu.Unlock()
		current = (current + 1) % len(snapshots)
		snap := snapshots[current]
		if err := cache.SetSnapshot(ctx, *group, snap); err != nil {
			log.Printf("set snapshot: %v", err)
		}
		return switchReport{Version: snap.GetVersion(resource.ClusterType), ReceivedUnixNano: received.UnixNano(), SetUnixNano: time.Now().UnixNano()}
	}

	// Envoy-like keepalive tolerance and no stream cap: 5,000 Envoys on one server must all get through.
	server := grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(server, serverv3.NewServer(ctx, cache, nil))
	xdsListener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	controlListener, err := net.Listen("tcp", *control)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /switch", func(w http.ResponseWriter, _ *http.Request) {
		report := trigger()
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(report)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	go func() { log.Fatal(http.Serve(controlListener, mux)) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			r := trigger()
			log.Printf("SIGHUP: version %s", r.Version)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Stop()
		os.Exit(0)
	}()

	// One JSON line on stdout tells the orchestrator where to connect.
	ready, _ := json.Marshal(map[string]int{"xdsPort": xdsListener.Addr().(*net.TCPAddr).Port, "controlPort": controlListener.Addr().(*net.TCPAddr).Port})
	fmt.Println(string(ready))
	if err := server.Serve(xdsListener); err != nil {
		log.Fatal(err)
	}
}
