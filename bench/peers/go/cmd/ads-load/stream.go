package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// change is what one stream saw between "arm" and the report: when the first response arrived, when it sent
// its last ACK, and how much it received.
type change struct {
	firstResponse time.Time
	lastAck       time.Time
	bytes         int64
	responses     int
	types         map[string]int
}

// adsStream is one simulated Envoy: one ADS stream (on its own connection unless connections are shared)
// that subscribes the way Envoy does and ACKs every response with its nonce.
type adsStream struct {
	id     int
	node   *core.Node
	call   discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	names  *nameCache
	events *recorder

	// Owned by the receiving goroutine.
	versions   map[string]string
	nonces     map[string]string
	subscribed map[string][]string // type URL -> resource names; nil for wildcard
	requested  map[string]bool
	acked      map[string]bool
	synced     bool
	openedAt   time.Time

	mu      sync.Mutex
	current *change // non-nil while armed
	// Totals for the initial sync.
	syncBytes int64
	syncedAt  time.Time
	// What the last initial-sync response of each type held (kept by stream 0 only).
	syncResources map[string]resourceDigest
}

// open starts the stream and sends the first request: CDS, wildcard, with the node (as Envoy does).
func (s *adsStream) open(ctx context.Context, conn *grpc.ClientConn) error {
	s.versions = map[string]string{}
	s.nonces = map[string]string{}
	s.subscribed = map[string][]string{}
	s.requested = map[string]bool{}
	s.acked = map[string]bool{}
	s.openedAt = time.Now()
	call, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.MaxCallRecvMsgSize(1<<30))
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
	return s.call.Send(req)
}

// run receives until the stream ends; each response is ACKed, and new cluster or route names change the EDS
// or RDS subscription, as Envoy's would.
func (s *adsStream) run() error {
	for {
		resp, err := s.call.Recv()
		if err != nil {
			return err
		}
		received := time.Now()
		size := int64(proto.Size(resp))
		s.events.touch(received)
		s.mu.Lock()
		if c := s.current; c != nil {
			if c.firstResponse.IsZero() {
				c.firstResponse = received
				s.events.firstResponse()
			}
			c.bytes += size
			c.responses++
			c.types[shortType(resp.TypeUrl)]++
		}
		if !s.synced {
			s.syncBytes += size
			if s.id == 0 {
				if s.syncResources == nil {
					s.syncResources = map[string]resourceDigest{}
				}
				s.syncResources[shortType(resp.TypeUrl)] = digestOf(resp)
			}
		}
		s.mu.Unlock()

		t := resp.TypeUrl
		s.versions[t] = resp.VersionInfo
		s.nonces[t] = resp.Nonce
		if err := s.call.Send(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce, ResourceNames: s.subscribed[t]}); err != nil {
			return err
		}
		acked := time.Now()
		s.acked[t] = true
		s.mu.Lock()
		if c := s.current; c != nil {
			c.lastAck = acked
		}
		s.mu.Unlock()
		s.events.touch(acked)

		if err := s.follow(resp); err != nil {
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

// follow updates the dependent subscriptions after a CDS or LDS response: EDS for the clusters' EDS names
// (then LDS once, as Envoy asks for listeners after its clusters warmed), RDS for the listeners' routes.
func (s *adsStream) follow(resp *discovery.DiscoveryResponse) error {
	switch resp.TypeUrl {
	case resource.ClusterType:
		names, err := s.names.of(resp)
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
		names, err := s.names.of(resp)
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
	s.mu.Unlock()
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
