// Package rendered reads the JSON that `flowgate render` prints into go-control-plane resources, so the Go
// peer serves exactly the resources Flowgate serves.
package rendered

import (
	"encoding/json"
	"fmt"
	"os"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	// Resolves the `@type` of every Any Flowgate writes.
	_ "flowgate/bench/peers/internal/envoytypes"
)

// Resources is one rendered configuration: Flowgate's snapshot version and the resources by type URL.
type Resources struct {
	Version string
	ByType  map[resource.Type][]types.Resource
}

// Count is the number of resources of every type.
func (r Resources) Count() int {
	n := 0
	for _, items := range r.ByType {
		n += len(items)
	}
	return n
}

type renderFile struct {
	Version   string            `json:"version"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
}

// Load parses the JSON file `flowgate render` prints; any field or type it cannot map is an error naming
// the resource, never a silently dropped setting.
func Load(path string) (Resources, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Resources{}, err
	}
	var file renderFile
	if err := json.Unmarshal(raw, &file); err != nil {
		return Resources{}, fmt.Errorf("%s: %w", path, err)
	}
	out := Resources{Version: file.Version, ByType: map[resource.Type][]types.Resource{}}
	sections := []struct {
		typeURL string
		items   []json.RawMessage
		make    func() proto.Message
	}{
		{resource.ClusterType, file.Clusters, func() proto.Message { return &cluster.Cluster{} }},
		{resource.EndpointType, file.Endpoints, func() proto.Message { return &endpoint.ClusterLoadAssignment{} }},
		{resource.ListenerType, file.Listeners, func() proto.Message { return &listener.Listener{} }},
		{resource.RouteType, file.Routes, func() proto.Message { return &route.RouteConfiguration{} }},
	}
	for _, s := range sections {
		items := make([]types.Resource, 0, len(s.items))
		for i, item := range s.items {
			msg := s.make()
			if err := protojson.Unmarshal(item, msg); err != nil {
				return Resources{}, fmt.Errorf("%s: %s[%d]: %w", path, s.typeURL, i, err)
			}
			items = append(items, msg)
		}
		out.ByType[s.typeURL] = items
	}
	return out, nil
}
