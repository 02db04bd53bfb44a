package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec moves messages as the bytes they are on the wire, so the client needs no generated code:
// requests are built and answers read field by field with protowire. It keeps the name "proto" so the
// content-type is the plain application/grpc+proto every server expects.
type rawCodec struct{}

// rawMessage is one protobuf message as bytes.
type rawMessage struct{ bytes []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return m.bytes, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	m.bytes = append([]byte(nil), data...)
	return nil
}

// serverMetadata is the part of inference.ServerMetadataResponse the client reports.
type serverMetadata struct {
	name    string
	version string
}

// Field numbers of inference.ServerMetadataResponse (test/fixtures/protos/inference.proto).
const (
	metadataNameField    protowire.Number = 1
	metadataVersionField protowire.Number = 2
)

// decodeServerMetadata reads name and version, skipping every other field as a proto3 parser does.
func decodeServerMetadata(b []byte) (serverMetadata, error) {
	var md serverMetadata
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return md, fmt.Errorf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == metadataNameField || num == metadataVersionField) {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return md, fmt.Errorf("bad field %d: %v", num, protowire.ParseError(m))
			}
			if num == metadataNameField {
				md.name = string(v)
			} else {
				md.version = string(v)
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return md, fmt.Errorf("bad field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return md, nil
}

// observingResolver wraps the xds resolver so every service config it hands the channel is reported:
// the clusters in it tell a test when a weight change has reached this channel (an ACK on the xDS
// stream comes earlier, before the channel has switched).
type observingResolver struct {
	resolver.Builder
	onClusters func([]string)
}

func (b observingResolver) Build(t resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	return b.Builder.Build(t, observingClientConn{ClientConn: cc, onClusters: b.onClusters}, opts)
}

type observingClientConn struct {
	resolver.ClientConn
	onClusters func([]string)
}

func (c observingClientConn) ParseServiceConfig(js string) *serviceconfig.ParseResult {
	c.onClusters(clustersOf(js))
	return c.ClientConn.ParseServiceConfig(js)
}

// clustersOf lists the children of the xds_cluster_manager policy in a service config the xds resolver
// generated: one per cluster that routes of the current (or a draining) configuration can pick.
func clustersOf(js string) []string {
	var sc struct {
		LoadBalancingConfig []map[string]struct {
			Children map[string]json.RawMessage `json:"children"`
		} `json:"loadBalancingConfig"`
	}
	out := []string{}
	if json.Unmarshal([]byte(js), &sc) != nil {
		return out
	}
	for _, policy := range sc.LoadBalancingConfig {
		for _, cfg := range policy {
			for child := range cfg.Children {
				// Children are keyed "cluster:<name>" (cluster specifier plugins have another prefix).
				if name, ok := strings.CutPrefix(child, "cluster:"); ok {
					out = append(out, name)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
