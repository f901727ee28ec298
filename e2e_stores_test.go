//go:build !nos3 && !nogcs

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// storeE2E is one bucket store as the dewy binary sees it.
type storeE2E struct {
	registry string                                        // --registry URL
	env      []string                                      // credentials and endpoints
	put      func(t *testing.T, objects map[string][]byte) // publish under the registry's prefix
	get      func(t *testing.T, key string) []byte         // read back an object under the prefix
}

func s3E2E(t *testing.T) storeE2E {
	b := s3TestBackend(t)
	bucket := b.bucket(t)
	return storeE2E{
		registry: "s3://" + s3TestRegion + "/" + bucket + "/apps/site?endpoint=" + b.endpoint,
		env:      []string{"AWS_ACCESS_KEY_ID=" + b.accessKey, "AWS_SECRET_ACCESS_KEY=" + b.secretKey, "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"},
		put: func(t *testing.T, objects map[string][]byte) {
			prefixed := map[string][]byte{}
			for k, v := range objects {
				prefixed["apps/site/"+k] = v
			}
			b.put(t, bucket, prefixed)
		},
		get: func(t *testing.T, key string) []byte {
			out, err := b.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("apps/site/" + key)})
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			defer out.Body.Close()
			data, _ := io.ReadAll(out.Body)
			return data
		},
	}
}

func gcsE2E(t *testing.T) storeE2E {
	b := gcsTestBackend(t)
	bucket := b.bucket(t)
	return storeE2E{
		registry: "gs://" + bucket + "/apps/site",
		env:      []string{"STORAGE_EMULATOR_HOST=" + b.host},
		put: func(t *testing.T, objects map[string][]byte) {
			prefixed := map[string][]byte{}
			for k, v := range objects {
				prefixed["apps/site/"+k] = v
			}
			b.put(t, bucket, prefixed)
		},
		get: func(t *testing.T, key string) []byte {
			// The emulator serves object bodies on its JSON API.
			resp, err := http.Get("http://" + b.host + "/storage/v1/b/" + bucket + "/o/" + url.PathEscape("apps/site/"+key) + "?alt=media")
			if err != nil {
				t.Fatalf("get %s: %v", key, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("get %s: %s", key, resp.Status)
			}
			data, _ := io.ReadAll(resp.Body)
			return data
		},
	}
}

func publishStore(t *testing.T, st storeE2E, tag string, files map[string][]byte) {
	objects := map[string][]byte{}
	for name, b := range files {
		objects[tag+"/"+name] = b
	}
	st.put(t, objects)
}

func TestE2EStores(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) storeE2E{"s3": s3E2E, "gcs": gcsE2E} {
		t.Run(name+" assets", func(t *testing.T) {
			st := mk(t)
			publishStore(t, st, "v1.0.0", siteRelease(t, "v1.0.0"))
			publishStore(t, st, "v1.1.0", siteRelease(t, "v1.1.0"))
			root := t.TempDir()
			r := runDewy(t, st.env, "assets", "--registry", st.registry, "--root", root, "--once", "--host-id", "web-1")
			if r.status != 0 || readCurrent(t, root, "index.html") != "site v1.1.0" {
				t.Fatalf("status %d:\n%s", r.status, r.out)
			}
			// The bucket learns which host runs what.
			if strings.Contains(r.out, "could not report") {
				t.Fatalf("report failed:\n%s", r.out)
			}
			var ev deployEvent
			if err := json.Unmarshal(st.get(t, "v1.1.0/deployed/web-1.json"), &ev); err != nil || ev.Kind != eventDeployed || ev.Version != "v1.1.0" || ev.Host != "web-1" {
				t.Fatalf("deploy report = %+v, %v", ev, err)
			}
			// A report in the bucket is not mistaken for an asset.
			r = runDewy(t, st.env, "assets", "--registry", st.registry, "--root", t.TempDir(), "--once")
			if r.status != 0 {
				t.Fatalf("second host: status %d:\n%s", r.status, r.out)
			}
		})
		t.Run(name+" server", func(t *testing.T) {
			buildApps(t)
			st := mk(t)
			publishStore(t, st, "v1.0.0", appRelease(t, "v1.0.0", "v1"))
			root, addr := t.TempDir(), freeAddr(t)
			cmd := exec.Command(dewyBinary(t), "server", "--registry", st.registry, "--root", root, "-p", addr,
				"--health-path", "/healthz", "-i", "1h", "--", filepath.Join(root, "current", "app"))
			cmd.Env = append(cmd.Environ(), st.env...)
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			waitFor(t, &out, "deployed v1.0.0")
			publishStore(t, st, "v2.0.0", appRelease(t, "v2.0.0", "v2"))
			cmd.Process.Signal(syscall.SIGUSR1)
			waitFor(t, &out, "deployed v2.0.0")
			if body, _ := get(t, "http://"+addr+"/"); !strings.Contains(body, "v2") {
				t.Fatalf("after deploy from %s the service answers %q", name, body)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, out.String())
			}
		})
	}
}
