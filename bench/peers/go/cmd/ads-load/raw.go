package main

import (
	"errors"
	"fmt"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// frame is what a stream keeps of one DiscoveryResponse: the fields it answers with and a key for its
// resources. The resources themselves are not decoded per stream (at 1,000 models a response is MBs and
// every stream receives the same ones): the first stream to see a key decodes it once for everyone
// (responseCache), the others count the bytes, ACK and drop them.
type frame struct {
	typeURL string
	version string
	nonce   string
	// Encoded size of the whole DiscoveryResponse.
	size int64
	key  string
	// The wire bytes, only when the cache does not know the key yet (set by the codec, taken by the stream).
	raw []byte
	// Asks whether a key is already known; nil keeps every response's bytes.
	known func(key string) bool
}

// rawCodec sends DiscoveryRequests as protobuf and reads DiscoveryResponses into frames. It is named
// "proto", so the content type is the one every xDS server expects.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	// One pooled contiguous buffer, given back before returning: no garbage per response.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if err := f.parse(b); err != nil {
		return err
	}
	if f.known == nil || !f.known(f.key) {
		f.raw = append([]byte(nil), b...)
	}
	return nil
}

// parse reads version_info (1), resources (2: counted and measured, not decoded), type_url (4) and
// nonce (5) of a DiscoveryResponse.
func (f *frame) parse(b []byte) error {
	f.typeURL, f.version, f.nonce, f.raw = "", "", "", nil
	f.size = int64(len(b))
	resources, resourceBytes := 0, 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		value, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			f.version = string(value)
		case 2:
			resources++
			resourceBytes += len(value)
		case 4:
			f.typeURL = string(value)
		case 5:
			f.nonce = string(value)
		}
	}
	if f.typeURL == "" {
		return errors.New("DiscoveryResponse without type_url")
	}
	// Servers version by content or by snapshot: within a version, equal counts and sizes are the same
	// resources.
	f.key = fmt.Sprintf("%s\x00%s\x00%d\x00%d", f.typeURL, f.version, resources, resourceBytes)
	return nil
}

// decode is the full DiscoveryResponse of a frame that kept its bytes.
func (f *frame) decode() (*discovery.DiscoveryResponse, error) {
	if f.raw == nil {
		return nil, errors.New("frame kept no bytes")
	}
	var resp discovery.DiscoveryResponse
	if err := proto.Unmarshal(f.raw, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}
