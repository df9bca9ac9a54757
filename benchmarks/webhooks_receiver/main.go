// A fast webhook receiver for bench_webhooks.py: 204 to every POST /hook, so the
// benchmark measures the dispatcher and not the receiver.
//
//	go build -o receiver . && ./receiver 127.0.0.1:8080
//
// GET /stats returns {"count": n, "latencies": [s, ...]}: the seconds from the t0
// the benchmark puts in each event's data.note to receipt. POST /reset clears them.
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

type body struct {
	Data struct {
		Note *string `json:"note"`
	} `json:"data"`
}

var (
	mu        sync.Mutex
	count     int
	latencies = []float64{}
)

func hook(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	now := float64(time.Now().UnixNano()) / 1e9
	var b body
	lat := -1.0
	if json.Unmarshal(raw, &b) == nil && b.Data.Note != nil {
		if t0, err := strconv.ParseFloat(*b.Data.Note, 64); err == nil {
			lat = now - t0
		}
	}
	mu.Lock()
	count++
	if lat >= 0 {
		latencies = append(latencies, lat)
	}
	mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func stats(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	defer mu.Unlock()
	w.Header().Set("content-type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"count": count, "latencies": latencies})
}

func reset(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	count, latencies = 0, []float64{}
	mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func main() {
	http.HandleFunc("/hook", hook)
	http.HandleFunc("/stats", stats)
	http.HandleFunc("/reset", reset)
	log.Fatal(http.ListenAndServe(os.Args[1], nil))
}
