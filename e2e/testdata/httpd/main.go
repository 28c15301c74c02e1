// Command httpd is the lab's container image program (e2e/lab/images.go
// packs it, statically linked, as the only file of an image): the lab has
// no registry and no Docker, so its images are built from Go source.
//
//	httpd [-listen :8080]            serve "host=<hostname> remote=<addr>"
//	httpd -get URL [-get URL ...]    fetch every URL, retrying until each
//	                                 answered or -timeout passed; exit 1
//	                                 if any did not
//	httpd -stream URL [-for D]       hold one connection to URL/stream
//	                                 open, reading the server's ticks, and
//	                                 report "ok lines=N maxgap=G" each
//	                                 second; exit 1 as soon as it breaks,
//	                                 0 after D
//	httpd -pause                     the pod sandbox's pause process
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type urls []string

func (u *urls) String() string     { return strings.Join(*u, ",") }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	var gets urls
	flag.Var(&gets, "get", "client mode: fetch this URL (repeatable) instead of serving")
	timeout := flag.Duration("timeout", 30*time.Second, "client mode: how long to keep retrying the URLs that did not answer")
	pause := flag.Bool("pause", false, "be a pod sandbox's pause process")
	stream := flag.String("stream", "", "client mode: hold one connection to this base URL's /stream open")
	streamFor := flag.Duration("for", 10*time.Minute, "stream mode: how long to hold the connection")
	flag.Parse()
	switch {
	case *pause:
		pauseMain()
	case *stream != "":
		os.Exit(streamFrom(*stream, *streamFor))
	case len(gets) > 0:
		os.Exit(getAll(gets, *timeout))
	default:
		serve(*listen)
	}
}

// serve answers every request with this pod's hostname (its name, in
// Kubernetes) and the caller's address, so a client can tell which pod it
// reached and the pod which address reached it.
func serve(listen string) {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s remote=%s\n", host, r.RemoteAddr)
	})
	// /stream writes a line every streamTick on one response until the
	// client goes away: a long-lived TCP connection for tests that must
	// show a connection surviving something (a daemon restart).
	http.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "no streaming", http.StatusInternalServerError)
			return
		}
		t := time.NewTicker(streamTick)
		defer t.Stop()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "tick %d host=%s\n", i, host); err != nil {
				return
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
	})
	fmt.Println("httpd: serving on", listen)
	if err := http.ListenAndServe(listen, nil); err != nil {
		fmt.Fprintln(os.Stderr, "httpd:", err)
		os.Exit(1)
	}
}

// getAll fetches every URL, retrying those that fail until each answered
// 200 or timeout passed (a new pod's routes can take a moment to reach
// every peer), and prints one line per URL: "OK <url> <body>" or
// "FAIL <url> <last error>".
func getAll(list []string, timeout time.Duration) int {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	pending := map[string]error{}
	for _, u := range list {
		pending[u] = nil
	}
	for len(pending) > 0 && time.Now().Before(deadline) {
		for _, u := range list {
			if _, ok := pending[u]; !ok {
				continue
			}
			body, err := get(client, u)
			if err != nil {
				pending[u] = err
				continue
			}
			delete(pending, u)
			fmt.Printf("OK %s %s\n", u, strings.TrimSpace(body))
		}
		if len(pending) > 0 {
			time.Sleep(250 * time.Millisecond)
		}
	}
	for _, u := range list {
		if err, ok := pending[u]; ok {
			fmt.Printf("FAIL %s %v\n", u, err)
		}
	}
	if len(pending) > 0 {
		return 1
	}
	return 0
}

func get(client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// streamTick is how often /stream writes.
const streamTick = 100 * time.Millisecond

// streamFrom reads base+"/stream" on one connection for d, printing once a
// second how many lines arrived and the longest wait between two. Any
// error (a reset, an EOF) ends it with exit 1: the connection did not
// survive. It dials once: no retry may hide a broken connection.
func streamFrom(base string, d time.Duration) int {
	resp, err := http.Get(strings.TrimSuffix(base, "/") + "/stream")
	if err != nil {
		fmt.Printf("BROKEN connect: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	lines := make(chan error)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				lines <- nil
			}
			if err != nil {
				lines <- err
				return
			}
		}
	}()
	fmt.Printf("connected to %s\n", base)
	var count int
	var maxGap time.Duration
	last := time.Now()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	end := time.After(d)
	for {
		select {
		case err := <-lines:
			if err != nil {
				fmt.Printf("BROKEN after %d reads (max gap %s): %v\n", count, maxGap.Round(time.Millisecond), err)
				return 1
			}
			if g := time.Since(last); g > maxGap {
				maxGap = g
			}
			last = time.Now()
			count++
		case <-report.C:
			fmt.Printf("ok reads=%d maxgap=%s\n", count, maxGap.Round(time.Millisecond))
		case <-end:
			fmt.Printf("done reads=%d maxgap=%s\n", count, maxGap.Round(time.Millisecond))
			return 0
		}
	}
}

// pauseMain is what the pause image's process does: hold the pod's
// namespaces, reap the zombies it inherits as the pod's init, and exit on
// SIGINT or SIGTERM.
func pauseMain() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
