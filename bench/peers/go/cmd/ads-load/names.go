package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	_ "flowgate/bench/peers/internal/envoytypes"
)

// nameCache maps a (type, version) response to the names it makes a client subscribe to next: the EDS
// service names of a CDS response, the route configuration names of an LDS response. Every stream gets the
// same resources for a version, so each version is decoded once rather than once per stream; the client
// stays cheap next to the server it measures.
type nameCache struct {
	mu      sync.Mutex
	entries map[string][]string
}

func newNameCache() *nameCache { return &nameCache{entries: map[string][]string{}} }

func (c *nameCache) of(resp *discovery.DiscoveryResponse) ([]string, error) {
	key := resp.TypeUrl + "\x00" + resp.VersionInfo
	c.mu.Lock()
	names, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		return names, nil
	}
	names, err := decodeNames(resp)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.entries[key] = names
	c.mu.Unlock()
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
	streamErrors   atomic.Int64
}

func (r *recorder) touch(t time.Time) { r.lastEvent.Store(t.UnixNano()) }
func (r *recorder) synced()           { r.syncedStreams.Add(1) }
func (r *recorder) firstResponse()    { r.firstResponses.Add(1) }

// resourceDigest says what a response held, independent of its version and nonce: the number of
// resources, their encoded size, and a SHA-256 over their encoded bytes in sorted order. Two servers
// serving byte-identical resources give equal digests.
type resourceDigest struct {
	Resources int    `json:"resources"`
	Bytes     int    `json:"bytes"`
	SHA256    string `json:"sha256"`
	// The same over each resource re-encoded canonically (through protojson, Any included, then a
	// deterministic marshal): equal when two servers serve the same configuration even if one of them
	// writes default values explicitly or orders fields differently.
	CanonicalSHA256 string `json:"canonicalSha256"`
}

func digestOf(resp *discovery.DiscoveryResponse) resourceDigest {
	values := make([][]byte, 0, len(resp.Resources))
	total := 0
	for _, r := range resp.Resources {
		values = append(values, r.Value)
		total += len(r.Value)
	}
	slices.SortFunc(values, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	d := resourceDigest{Resources: len(values), Bytes: total, SHA256: hex.EncodeToString(h.Sum(nil))[:16]}
	canonical := make([][]byte, 0, len(resp.Resources))
	for _, r := range resp.Resources {
		b, err := canonicalBytes(r)
		if err != nil {
			d.CanonicalSHA256 = "error: " + err.Error()
			return d
		}
		canonical = append(canonical, b)
	}
	slices.SortFunc(canonical, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	h.Reset()
	for _, v := range canonical {
		h.Write(v)
	}
	d.CanonicalSHA256 = hex.EncodeToString(h.Sum(nil))[:16]
	return d
}

func canonicalBytes(r *anypb.Any) ([]byte, error) {
	msg, err := r.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	text, err := protojson.Marshal(msg)
	if err != nil {
		return nil, err
	}
	again := msg.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(text, again); err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(again)
}
