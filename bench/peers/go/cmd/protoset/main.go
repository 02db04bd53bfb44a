// Command protoset writes a FileDescriptorSet (ghz --protoset) of an Envoy service and every file it
// imports, from the descriptors compiled into go-control-plane, so ghz needs no .proto search paths.
package main

import (
	"flag"
	"log"
	"os"

	_ "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

func main() {
	file := flag.String("file", "envoy/service/ratelimit/v3/rls.proto", "the .proto whose services ghz calls")
	out := flag.String("out", "", "where to write the FileDescriptorSet")
	flag.Parse()
	if *out == "" {
		log.Fatal("give --out FILE")
	}
	root, err := protoregistry.GlobalFiles.FindFileByPath(*file)
	if err != nil {
		log.Fatal(err)
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	// Dependencies first: a FileDescriptorSet is read in order.
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(root)
	b, err := proto.Marshal(set)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
}
