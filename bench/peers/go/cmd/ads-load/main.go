// Command ads-load is the neutral xDS client of the side-by-side: it opens N ADS streams the way Envoy
// does (node with id and cluster; CDS wildcard, then EDS for the clusters' EDS names, LDS wildcard, then
// RDS for the listeners' route names; every response ACKed with its nonce), waits for the initial sync and
// reports it, then measures changes driven from outside.
//
// Protocol: JSON lines on stdout; commands on stdin, one a line:
//
//	arm               start recording (send before causing the change)
//	expect FILE       the next change leads to the configuration in this `flowgate render` file: a
//	                  stream's change is complete once it holds exactly that (canonical digest of every
//	                  type); read before arming so the parsing is not inside the measurement
//	trigger UNIXNANO  the change was caused at this wall-clock time; report once every stream has
//	                  received something, traffic has been quiet for --quiet and (after expect) every
//	                  stream holds the expected configuration
//	quit              close the streams and exit
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

type options struct {
	target        string
	streams       int
	group         string
	nodePrefix    string
	metadata      string
	openParallel  int
	quiet         time.Duration
	syncTimeout   time.Duration
	changeTimeout time.Duration
	window        int
}

func main() {
	var o options
	flag.StringVar(&o.target, "target", "127.0.0.1:18000", "xDS server host:port")
	flag.IntVar(&o.streams, "streams", 100, "ADS streams to open (one connection each, like N Envoys)")
	flag.StringVar(&o.group, "cluster", "flowgate-bench", "node.cluster of every stream")
	flag.StringVar(&o.nodePrefix, "node-prefix", "envoy-", "node.id prefix (the stream index follows)")
	flag.StringVar(&o.metadata, "metadata", "", "node.metadata as a JSON object")
	flag.IntVar(&o.openParallel, "open-parallel", 64, "streams being opened at once during the initial connect")
	flag.DurationVar(&o.quiet, "quiet", time.Second, "a change is over when every stream got a response and nothing arrived for this long")
	flag.DurationVar(&o.syncTimeout, "sync-timeout", 10*time.Minute, "give up on the initial sync after this long")
	flag.DurationVar(&o.changeTimeout, "change-timeout", 5*time.Minute, "report a change after this long even if some streams got nothing")
	flag.IntVar(&o.window, "window", envoyWindow, "HTTP/2 initial stream and connection flow-control window, bytes (Envoy's default: 256 MiB); 0: grpc-go's default (64 KiB, grown by its BDP estimate)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("ads-load: ")

	var metadata *structpb.Struct
	if o.metadata != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(o.metadata), &m); err != nil {
			log.Fatalf("--metadata: %v", err)
		}
		var err error
		if metadata, err = structpb.NewStruct(m); err != nil {
			log.Fatalf("--metadata: %v", err)
		}
	}

	events := &recorder{}
	names := newNameCache()
	digests := newDigestCache()
	streams := make([]*adsStream, o.streams)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := time.Now()
	opening := make(chan struct{}, o.openParallel)
	var wg sync.WaitGroup
	for i := range streams {
		s := &adsStream{id: i, names: names, digests: digests, events: events, node: &core.Node{Id: fmt.Sprintf("%s%d", o.nodePrefix, i), Cluster: o.group, Metadata: metadata, UserAgentName: "ads-load"}}
		streams[i] = s
		opening <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := grpc.NewClient(o.target, dialOptions(o)...)
			if err != nil {
				log.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			err = s.open(ctx, conn)
			// The next stream may start opening once this one has its first response (or failed).
			var once sync.Once
			release := func() { once.Do(func() { <-opening }) }
			if err == nil {
				go func() {
					for !s.isSynced() && ctx.Err() == nil {
						time.Sleep(5 * time.Millisecond)
					}
					release()
				}()
				err = s.run()
			}
			release()
			if ctx.Err() == nil {
				if events.streamErrors.Add(1) <= 5 {
					log.Printf("stream %d ended: %v", s.id, err)
				}
			}
		}()
	}
	for events.syncedStreams.Load() < int64(o.streams) {
		if time.Since(started) > o.syncTimeout {
			log.Printf("initial sync timed out: %d of %d streams synced", events.syncedStreams.Load(), o.streams)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	digests.computePending()
	emit(syncReport(streams, started, events))

	var expectNext map[string]string

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "arm":
			events.firstResponses.Store(0)
			events.completed.Store(0)
			for _, s := range streams {
				s.arm()
			}
			emit(map[string]any{"event": "armed"})
		case "trigger":
			if len(fields) != 2 {
				log.Printf("trigger needs a UNIXNANO time")
				continue
			}
			at, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				log.Printf("trigger: %v", err)
				continue
			}
			if expectNext != nil {
				for _, s := range streams {
					s.expect(expectNext)
				}
			}
			emit(awaitChange(streams, events, digests, time.Unix(0, at), expectNext != nil, o))
			expectNext = nil
		case "expect":
			if len(fields) != 2 {
				log.Printf("expect needs a rendered file")
				continue
			}
			var err error
			if expectNext, err = expectedDigests(fields[1]); err != nil {
				log.Fatalf("expect: %v", err)
			}
			emit(map[string]any{"event": "expecting", "digests": expectNext})
		case "quit":
			cancel()
			return
		default:
			log.Printf("unknown command %q", fields[0])
		}
	}
	cancel()
}

// envoyWindow is Envoy's default HTTP/2 initial_stream_window_size and initial_connection_window_size: the
// flow-control window a real Envoy gives its xDS connection, so a big response is not sent 64 KiB per round
// trip.
const envoyWindow = 256 << 20

func dialOptions(o options) []grpc.DialOption {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if o.window > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(int32(o.window)), grpc.WithInitialConnWindowSize(int32(o.window)))
	}
	return opts
}

func (s *adsStream) isSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// awaitChange waits for the change to reach the fleet and settle, then reports it relative to `trigger`.
func awaitChange(streams []*adsStream, events *recorder, digests *digestCache, trigger time.Time, expecting bool, o options) map[string]any {
	deadline := time.Now().Add(o.changeTimeout)
	n := int64(len(streams))
	for time.Now().Before(deadline) {
		if events.firstResponses.Load() >= n && time.Since(time.Unix(0, events.lastEvent.Load())) >= o.quiet {
			if !expecting {
				break
			}
			// Quiet is not the end by itself (a server may pause mid-push): the end is every stream
			// holding the expected configuration.
			digests.computePending()
			for _, s := range streams {
				s.recheck()
			}
			if events.completed.Load() >= n {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var first, acked, complete, bytes, responses []float64
	types := map[string]int{}
	var earliest, latest, latestComplete time.Time
	for _, s := range streams {
		c := s.take()
		if c == nil || c.firstResponse.IsZero() {
			continue
		}
		first = append(first, ms(c.firstResponse.Sub(trigger)))
		acked = append(acked, ms(c.lastAck.Sub(trigger)))
		if !c.completeAt.IsZero() {
			complete = append(complete, ms(c.completeAt.Sub(trigger)))
			if c.completeAt.After(latestComplete) {
				latestComplete = c.completeAt
			}
		}
		bytes = append(bytes, float64(c.bytes))
		responses = append(responses, float64(c.responses))
		for t, n := range c.types {
			types[t] += n
		}
		if earliest.IsZero() || c.firstResponse.Before(earliest) {
			earliest = c.firstResponse
		}
		if c.lastAck.After(latest) {
			latest = c.lastAck
		}
	}
	report := map[string]any{
		"event":              "change",
		"streams":            len(streams),
		"streamsUpdated":     len(first),
		"streamErrors":       events.streamErrors.Load(),
		"protocolErrors":     events.protocolErrors.Load(),
		"firstResponseMs":    summary(first),
		"completeMs":         summary(complete),
		"streamsComplete":    len(complete),
		"allAckedMs":         summary(acked),
		"bytesPerStream":     summary(bytes),
		"responsesPerStream": summary(responses),
		"responsesByType":    types,
	}
	// The fan-out: from the first push anywhere to the last stream done (complete, or its last ACK).
	if len(complete) > 0 {
		report["fanOutMs"] = ms(latestComplete.Sub(earliest))
	} else if len(first) > 0 {
		report["fanOutMs"] = ms(latest.Sub(earliest))
	}
	return report
}

func syncReport(streams []*adsStream, started time.Time, events *recorder) map[string]any {
	var perStream, bytes []float64
	var last time.Time
	// What stream 0 holds (digested by computePending before this report), to compare servers.
	resources := streams[0].heldDigests()
	for _, s := range streams {
		s.mu.Lock()
		if s.synced {
			perStream = append(perStream, ms(s.syncedAt.Sub(s.openedAt)))
			bytes = append(bytes, float64(s.syncBytes))
			if s.syncedAt.After(last) {
				last = s.syncedAt
			}
		}
		s.mu.Unlock()
	}
	return map[string]any{
		"event":          "synced",
		"streams":        len(streams),
		"synced":         len(perStream),
		"streamErrors":   events.streamErrors.Load(),
		"protocolErrors": events.protocolErrors.Load(),
		"wallMs":         ms(last.Sub(started)),
		"perStreamMs":    summary(perStream),
		"bytesPerStream": summary(bytes),
		"resources":      resources,
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

var out = json.NewEncoder(os.Stdout)

func emit(v any) {
	if err := out.Encode(v); err != nil {
		log.Fatal(err)
	}
}
