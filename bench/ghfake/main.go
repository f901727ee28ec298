// Command ghfake serves a directory laid out as <dir>/<tag>/<files> through
// the two GitHub REST calls dewy makes (list releases, download an asset via
// a redirect), so benchmarks measure dewy over real HTTP on loopback.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	dir := flag.String("dir", ".", "registry directory")
	flag.Parse()
	type asset struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
		Size int64  `json:"size"`
		URL  string `json:"url"`
	}
	type rel struct {
		ID     int     `json:"id"`
		Tag    string  `json:"tag_name"`
		Assets []asset `json:"assets"`
	}
	var rels []rel
	byID := map[int]string{}
	tags, _ := os.ReadDir(*dir)
	id := 1
	for _, t := range tags {
		r := rel{ID: id, Tag: t.Name()}
		files, _ := os.ReadDir(filepath.Join(*dir, t.Name()))
		for _, f := range files {
			id++
			info, _ := f.Info()
			byID[id] = filepath.Join(t.Name(), f.Name())
			r.Assets = append(r.Assets, asset{ID: id, Name: f.Name(), Size: info.Size()})
		}
		rels = append(rels, r)
		id++
	}
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	http.HandleFunc("/repos/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/releases") {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rels)
			return
		}
		i := strings.LastIndex(r.URL.Path, "/")
		n, _ := strconv.Atoi(r.URL.Path[i+1:])
		if p, ok := byID[n]; ok {
			http.Redirect(w, r, "/download/"+p, http.StatusFound)
			return
		}
		http.NotFound(w, r)
	})
	http.Handle("/download/", http.StripPrefix("/download/", http.FileServer(http.Dir(*dir))))
	log.Fatal(http.ListenAndServe(*addr, nil))
}
