package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

var adsStreamDesc = &grpc.StreamDesc{StreamName: "StreamAggregatedResources", ServerStreams: true, ClientStreams: true}

// change is what one stream saw between "arm" and the report: when the first response arrived, when it sent
// its last ACK, and how much it received.
type change struct {
	firstResponse time.Time
	lastAck       time.Time
	// When the stream first held exactly the expected configuration (zero without an expectation).
	completeAt time.Time
	bytes      int64
	responses  int
	types      map[string]int
}

// heldResponse names the last response of a type a stream ACKed, and when.
type heldResponse struct {
	key string
	at  time.Time
}

// adsStream is one simulated Envoy: one ADS stream (on its own connection unless connections are shared)
// that subscribes the way Envoy does and ACKs every response with its nonce.
type adsStream struct {
	id      int
	node    *core.Node
	call    grpc.ClientStream
	names   *nameCache
	digests *digestCache
	events  *recorder

	// Owned by the receiving goroutine.
	versions   map[string]string
	nonces     map[string]string
	subscribed map[string][]string // type URL -> resource names; nil for wildcard
	requested  map[string]bool
	acked      map[string]bool
	lastNonce  string
	synced     bool
	openedAt   time.Time

	mu      sync.Mutex
	current *change // non-nil while armed
	// The last response of each type, by short type name: what the stream holds, all of it ACKed.
	held map[string]heldResponse
	// Canonical digests by short type name the stream must hold for the current change to be complete.
	expected map[string]string
	// Totals for the initial sync.
	syncBytes int64
	syncedAt  time.Time
}

// open starts the stream and sends the first request: CDS, wildcard, with the node (as Envoy does).
func (s *adsStream) open(ctx context.Context, conn *grpc.ClientConn) error {
	s.versions = map[string]string{}
	s.nonces = map[string]string{}
	s.subscribed = map[string][]string{}
	s.requested = map[string]bool{}
	s.acked = map[string]bool{}
	s.held = map[string]heldResponse{}
	s.openedAt = time.Now()
	// Responses are read raw (rawCodec): a stream keeps no decoded copy of what it receives.
	call, err := conn.NewStream(ctx, adsStreamDesc, adsMethod, grpc.MaxCallRecvMsgSize(1<<30), grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	s.call = call
	return s.subscribe(resource.ClusterType, nil)
}

// subscribe sends a request for `names` of a type (nil: wildcard), carrying the last version and nonce.
func (s *adsStream) subscribe(typeURL string, names []string) error {
	req := &discovery.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: s.versions[typeURL], ResponseNonce: s.nonces[typeURL]}
	if len(s.requested) == 0 {
		req.Node = s.node
	}
	s.requested[typeURL] = true
	s.subscribed[typeURL] = names
	return s.call.SendMsg(req)
}

// run receives until the stream ends; each response is checked (version and a fresh nonce) and ACKed, and
// new cluster or route names change the EDS or RDS subscription, as Envoy's would.
func (s *adsStream) run() error {
	for {
		f := frame{known: s.digests.known}
		if err := s.call.RecvMsg(&f); err != nil {
			return err
		}
		received := time.Now()
		s.events.touch(received)
		s.check(&f)
		if f.raw != nil {
			// The first stream to see these resources decodes them once for every stream.
			if err := s.learn(&f); err != nil {
				return err
			}
		}
		s.mu.Lock()
		if c := s.current; c != nil {
			if c.firstResponse.IsZero() {
				c.firstResponse = received
				s.events.firstResponse()
			}
			c.bytes += f.size
			c.responses++
			c.types[shortType(f.typeURL)]++
		}
		if !s.synced {
			s.syncBytes += f.size
		}
		s.mu.Unlock()

		t := f.typeURL
		s.versions[t] = f.version
		s.nonces[t] = f.nonce
		if err := s.call.SendMsg(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: f.version, ResponseNonce: f.nonce, ResourceNames: s.subscribed[t]}); err != nil {
			return err
		}
		acked := time.Now()
		s.acked[t] = true
		s.mu.Lock()
		s.held[shortType(t)] = heldResponse{key: f.key, at: acked}
		if c := s.current; c != nil {
			c.lastAck = acked
			s.checkComplete()
		}
		s.mu.Unlock()
		s.events.touch(acked)

		if err := s.follow(&f); err != nil {
			return err
		}
		if !s.synced && s.acked[resource.ClusterType] && s.acked[resource.ListenerType] &&
			(s.requested[resource.EndpointType] == s.acked[resource.EndpointType]) &&
			(s.requested[resource.RouteType] == s.acked[resource.RouteType]) {
			s.mu.Lock()
			s.synced = true
			s.syncedAt = acked
			s.mu.Unlock()
			s.events.synced()
		}
	}
}

// check counts a response that breaks the protocol: no version, no nonce, or the nonce of the stream's
// previous response (a client could not tell its ACK from the previous one).
func (s *adsStream) check(f *frame) {
	var problem string
	switch {
	case f.version == "":
		problem = "no version_info"
	case f.nonce == "":
		problem = "no nonce"
	case f.nonce == s.lastNonce:
		problem = fmt.Sprintf("nonce %q repeated", f.nonce)
	}
	s.lastNonce = f.nonce
	if problem != "" && s.events.protocolErrors.Add(1) <= 5 {
		log.Printf("stream %d: %s response %s", s.id, shortType(f.typeURL), problem)
	}
}

// learn decodes a response not seen before: the names it makes streams subscribe to, then its digest
// entry (after the names, so a key the digest cache knows always has its names).
func (s *adsStream) learn(f *frame) error {
	resp, err := f.decode()
	if err != nil {
		return err
	}
	f.raw = nil
	if err := s.names.learn(f.key, resp); err != nil {
		return err
	}
	s.digests.ensure(f.key, resp)
	return nil
}

// follow updates the dependent subscriptions after a CDS or LDS response: EDS for the clusters' EDS names
// (then LDS once, as Envoy asks for listeners after its clusters warmed), RDS for the listeners' routes.
func (s *adsStream) follow(f *frame) error {
	switch f.typeURL {
	case resource.ClusterType:
		names, err := s.names.of(f.key)
		if err != nil {
			return err
		}
		if len(names) > 0 && (!s.requested[resource.EndpointType] || !slices.Equal(names, s.subscribed[resource.EndpointType])) {
			if err := s.subscribe(resource.EndpointType, names); err != nil {
				return err
			}
		}
		if len(names) == 0 && !s.requested[resource.ListenerType] {
			return s.subscribe(resource.ListenerType, nil)
		}
	case resource.EndpointType:
		if !s.requested[resource.ListenerType] {
			return s.subscribe(resource.ListenerType, nil)
		}
	case resource.ListenerType:
		names, err := s.names.of(f.key)
		if err != nil {
			return err
		}
		if len(names) > 0 && (!s.requested[resource.RouteType] || !slices.Equal(names, s.subscribed[resource.RouteType])) {
			return s.subscribe(resource.RouteType, names)
		}
	}
	return nil
}

// arm starts a new change record; take ends it and returns what was seen.
func (s *adsStream) arm() {
	s.mu.Lock()
	s.current = &change{types: map[string]int{}}
	s.expected = nil
	s.mu.Unlock()
}

// expect sets the configuration that completes the current change; a stream that already holds it is
// complete as of its last ACK.
func (s *adsStream) expect(expected map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expected = expected
	s.checkComplete()
}

// recheck looks again once digests computed since the last response are ready.
func (s *adsStream) recheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkComplete()
}

// checkComplete marks the change complete when every type the stream holds is the expected one, as of the
// ACK of the last of them (the moment it held them all). Called with s.mu held.
func (s *adsStream) checkComplete() {
	c := s.current
	if c == nil || s.expected == nil || !c.completeAt.IsZero() || c.firstResponse.IsZero() {
		return
	}
	var at time.Time
	for t, want := range s.expected {
		h, ok := s.held[t]
		if !ok {
			return
		}
		d, ok := s.digests.ready(h.key)
		if !ok || d.CanonicalSHA256 != want {
			return
		}
		if h.at.After(at) {
			at = h.at
		}
	}
	c.completeAt = at
	s.events.completed.Add(1)
}

// heldDigests are the digests of what the stream holds, by short type name.
func (s *adsStream) heldDigests() map[string]resourceDigest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]resourceDigest{}
	for t, h := range s.held {
		if d, ok := s.digests.ready(h.key); ok {
			out[t] = d
		}
	}
	return out
}

func (s *adsStream) take() *change {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.current
	s.current = nil
	return c
}

func shortType(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "CDS"
	case resource.EndpointType:
		return "EDS"
	case resource.ListenerType:
		return "LDS"
	case resource.RouteType:
		return "RDS"
	}
	return fmt.Sprintf("other(%s)", typeURL)
}
