package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// stateWatch follows the channel's connectivity state from the start. After the first READY, every
// move away from READY is counted: a weight change that the client applies in place leaves it at zero.
// grpc-go reports states by polling (WaitForStateChange), so a flap faster than one poll can be missed;
// the test also checks on the servers' side that no new connection was opened.
type stateWatch struct {
	mu        sync.Mutex
	seenReady bool
	left      int
	states    []string
	ready     chan struct{}
}

func watchStates(conn *grpc.ClientConn) *stateWatch {
	w := &stateWatch{ready: make(chan struct{})}
	state := conn.GetState()
	w.observe(state)
	conn.Connect()
	go func() {
		for conn.WaitForStateChange(context.Background(), state) {
			state = conn.GetState()
			w.observe(state)
			if state == connectivity.Shutdown {
				return
			}
		}
	}()
	return w
}

func (w *stateWatch) observe(s connectivity.State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := ""
	if n := len(w.states); n > 0 {
		prev = w.states[n-1]
	}
	w.states = append(w.states, s.String())
	switch {
	case s == connectivity.Ready && !w.seenReady:
		w.seenReady = true
		close(w.ready)
	case w.seenReady && prev == connectivity.Ready.String() && s != connectivity.Ready:
		w.left++
	}
}

func (w *stateWatch) awaitReady(timeout time.Duration) error {
	select {
	case <-w.ready:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("channel not READY within %v (states: %v)", timeout, w.history())
	}
}

func (w *stateWatch) readyLeft() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.left
}

func (w *stateWatch) history() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.states...)
}
