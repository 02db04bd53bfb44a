package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// nameCache maps a response (its key, see frame) to the names it makes a client subscribe to next: the EDS
// service names of a CDS response, the route configuration names of an LDS response. Every stream gets the
// same resources, so each distinct response is decoded once (by the first stream to see it) rather than
// once per stream; the client stays cheap next to the server it measures.
type nameCache struct {
	mu      sync.Mutex
	entries map[string][]string
}

func newNameCache() *nameCache { return &nameCache{entries: map[string][]string{}} }

// learn records the names of a decoded response (CDS and LDS; other types have none to follow).
func (c *nameCache) learn(key string, resp *discovery.DiscoveryResponse) error {
	if resp.TypeUrl != resource.ClusterType && resp.TypeUrl != resource.ListenerType {
		return nil
	}
	names, err := decodeNames(resp)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.entries[key] = names
	c.mu.Unlock()
	return nil
}

// of is the names of a response learnt before (by this stream or another).
func (c *nameCache) of(key string) ([]string, error) {
	c.mu.Lock()
	names, ok := c.entries[key]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no names learnt for response %q", key)
	}
	return names, nil
}

func decodeNames(resp *discovery.DiscoveryResponse) ([]string, error) {
	var names []string
	for _, r := range resp.Resources {
		switch resp.TypeUrl {
		case resource.ClusterType:
			var cl cluster.Cluster
			if err := proto.Unmarshal(r.Value, &cl); err != nil {
				return nil, fmt.Errorf("cluster: %w", err)
			}
			if cl.GetType() != cluster.Cluster_EDS {
				continue
			}
			name := cl.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = cl.GetName()
			}
			names = append(names, name)
		case resource.ListenerType:
			var l listener.Listener
			if err := proto.Unmarshal(r.Value, &l); err != nil {
				return nil, fmt.Errorf("listener: %w", err)
			}
			for _, chain := range l.GetFilterChains() {
				for _, f := range chain.GetFilters() {
					var m hcm.HttpConnectionManager
					if f.GetTypedConfig().MessageIs(&m) {
						if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
							return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
						}
						if rds := m.GetRds(); rds != nil {
							names = append(names, rds.GetRouteConfigName())
						}
					}
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// recorder holds the fleet-wide counts the orchestrating loop waits on.
type recorder struct {
	lastEvent      atomic.Int64
	syncedStreams  atomic.Int64
	firstResponses atomic.Int64
	completed      atomic.Int64
	streamErrors   atomic.Int64
	protocolErrors atomic.Int64
}

func (r *recorder) touch(t time.Time) { r.lastEvent.Store(t.UnixNano()) }
func (r *recorder) synced()           { r.syncedStreams.Add(1) }
func (r *recorder) firstResponse()    { r.firstResponses.Add(1) }
