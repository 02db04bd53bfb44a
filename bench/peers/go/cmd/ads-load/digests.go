package main

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	_ "flowgate/bench/peers/internal/envoytypes"
	"flowgate/bench/peers/internal/rendered"
)

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

// digestCache computes each distinct response's digest once: every stream receives the same responses,
// and the canonical re-encoding is far dearer than receiving. Computing waits for computePending, which
// the client calls once traffic is quiet, so it never takes CPU from the push being measured.
type digestCache struct {
	mu      sync.Mutex
	entries map[string]*digestEntry
}

type digestEntry struct {
	resp   *discovery.DiscoveryResponse // kept until computed
	done   atomic.Bool
	digest resourceDigest
}

func newDigestCache() *digestCache { return &digestCache{entries: map[string]*digestEntry{}} }

// known says whether a response with this key (see frame) was recorded, by any stream.
func (c *digestCache) known(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[key]
	return ok
}

// ensure records a response not seen before, to be digested later; one already known (from another
// stream) costs one map lookup and keeps no reference to it.
func (c *digestCache) ensure(key string, resp *discovery.DiscoveryResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, known := c.entries[key]; !known {
		c.entries[key] = &digestEntry{resp: resp}
	}
}

// computePending digests every response recorded since the last call. Only one goroutine calls it.
func (c *digestCache) computePending() {
	c.mu.Lock()
	var pending []*digestEntry
	for _, e := range c.entries {
		if !e.done.Load() {
			pending = append(pending, e)
		}
	}
	c.mu.Unlock()
	for _, e := range pending {
		e.digest = digestOf(e.resp)
		e.resp = nil
		e.done.Store(true)
	}
}

// ready is the digest of a key, if it has been computed; it never waits.
func (c *digestCache) ready(key string) (resourceDigest, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !e.done.Load() {
		return resourceDigest{}, false
	}
	return e.digest, true
}

func digestOf(resp *discovery.DiscoveryResponse) resourceDigest {
	raw := make([][]byte, 0, len(resp.Resources))
	canonical := make([][]byte, 0, len(resp.Resources))
	total := 0
	var failure error
	for _, r := range resp.Resources {
		raw = append(raw, r.Value)
		total += len(r.Value)
		b, err := canonicalBytes(r)
		if err != nil && failure == nil {
			failure = err
		}
		canonical = append(canonical, b)
	}
	d := resourceDigest{Resources: len(raw), Bytes: total, SHA256: sortedHash(raw), CanonicalSHA256: sortedHash(canonical)}
	if failure != nil {
		d.CanonicalSHA256 = "error: " + failure.Error()
	}
	return d
}

func sortedHash(values [][]byte) string {
	sorted := slices.Clone(values)
	slices.SortFunc(sorted, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	h := sha256.New()
	for _, v := range sorted {
		h.Write(v)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
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

// expectedDigests are the canonical digests, by short type name, of the resources a `flowgate render`
// file holds: what every stream must end up holding once a change is complete.
func expectedDigests(path string) (map[string]string, error) {
	res, err := rendered.Load(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
		items := res.ByType[typeURL]
		encoded := make([][]byte, 0, len(items))
		for _, item := range items {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(item)
			if err != nil {
				return nil, err
			}
			encoded = append(encoded, b)
		}
		out[shortType(typeURL)] = sortedHash(encoded)
	}
	return out, nil
}
