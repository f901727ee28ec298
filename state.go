package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// deployState is what dewy remembers between runs, in <root>/.dewy/state.json.
type deployState struct {
	Current     string                   `json:"current,omitempty"`      // tag
	CurrentDir  string                   `json:"current_dir,omitempty"`  // directory under releases/
	Asset       string                   `json:"asset,omitempty"`        // artifact name
	SHA256      string                   `json:"sha256,omitempty"`       // artifact digest
	VerifiedBy  string                   `json:"verified_by,omitempty"`  // what vouched for the digest
	DeployedAt  time.Time                `json:"deployed_at,omitzero"`   //
	Previous    string                   `json:"previous,omitempty"`     // tag before current
	PreviousDir string                   `json:"previous_dir,omitempty"` //
	Failed      map[string]failedRelease `json:"failed,omitempty"`       // by tag
	// Paused holds every deploy until the operator resumes (control.go).
	Paused *pauseInfo `json:"paused,omitempty"`
	// Held are releases an operator rolled back from: not deployed again
	// until the registry's newest release is another one, or a resume.
	Held []string `json:"held,omitempty"`
}

// failedRelease is why a release is not tried again yet.
type failedRelease struct {
	Asset string `json:"asset"`
	Size  int64  `json:"size"`
	// Fingerprint is every file of the release by name and size: a
	// release fixed in place (re-signed, checksum corrected) is tried again.
	Fingerprint string    `json:"fingerprint,omitempty"`
	Reason      string    `json:"reason"`
	Permanent   bool      `json:"permanent,omitempty"` // failed its health check: wait for a newer release or --retry-failed
	Attempts    int       `json:"attempts"`
	NotBefore   time.Time `json:"not_before,omitzero"`
}

func statePath(root string) string { return filepath.Join(root, dewyDir, "state.json") }

func loadState(root string) (*deployState, error) {
	s := &deployState{}
	data, err := os.ReadFile(statePath(root))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		// The file is written atomically, so this is damage from outside;
		// current still says what is live, so start afresh rather than stop.
		return &deployState{}, fmt.Errorf("state file %s unreadable, starting afresh: %w", statePath(root), err)
	}
	return s, nil
}

func (s *deployState) save(root string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(statePath(root), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// timeNow is the clock; tests that need another use the deployer's now field.
var timeNow = time.Now

// releaseFingerprint names a release's content as the registry lists it.
func releaseFingerprint(rel release) string {
	parts := make([]string, 0, len(rel.Assets))
	for _, a := range rel.Assets {
		parts = append(parts, fmt.Sprintf("%s:%d:%s", a.Name, a.Size, a.SHA256))
	}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:8])
}
