package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

var _ notifier = (*slackNotifier)(nil)

// slackNotifier posts with chat.postMessage (https://api.slack.com/methods/chat.postMessage).
type slackNotifier struct {
	notifyPoster
	endpoint string // API base + "chat.postMessage"
	token    string
	channel  string
	title    string
}

var slackChannelID = regexp.MustCompile(`^[CGD][A-Z0-9]{6,}$`)

// buildSlackNotifier is slack://'s row in the notifier scheme table.
func buildSlackNotifier(u *url.URL, _ string, getenv func(string) string) (notifier, bool, []string, error) {
	s, quiet, err := newSlackNotifier(u, getenv)
	if err != nil {
		return nil, false, nil, err
	}
	return s, quiet, []string{s.token}, nil
}

// newSlackNotifier reads slack://channel?title=app&quiet=true; slack://#channel works too.
func newSlackNotifier(u *url.URL, getenv func(string) string) (*slackNotifier, bool, error) {
	ch := slackChannelOf(u)
	if ch == "" || strings.ContainsAny(ch, " /") {
		return nil, false, errors.New("want slack://channel-name or slack://channel-ID")
	}
	if !slackChannelID.MatchString(ch) && !strings.HasPrefix(ch, "#") {
		ch = "#" + ch
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, false, fmt.Errorf("bad query: %v", err)
	}
	quiet := false
	for k, v := range q {
		switch k {
		case "title":
			// used below
		case "quiet":
			if quiet, err = strconv.ParseBool(v[0]); err != nil {
				return nil, false, fmt.Errorf("quiet=%q: want true or false", v[0])
			}
		default:
			return nil, false, fmt.Errorf("unknown setting %q (want title or quiet)", k)
		}
	}
	token := strings.TrimSpace(getenv("SLACK_TOKEN"))
	if token == "" {
		return nil, false, errors.New("SLACK_TOKEN is not set")
	}
	api := getenv("SLACK_API_URL")
	if api == "" {
		api = "https://slack.com/api/"
	}
	au, err := url.Parse(api)
	if err != nil || (au.Scheme != "https" && au.Scheme != "http") || au.Host == "" {
		return nil, false, fmt.Errorf("SLACK_API_URL %q: want an http(s) URL", redactNotifyURL(api))
	}
	if !strings.HasSuffix(api, "/") {
		api += "/"
	}
	return &slackNotifier{
		notifyPoster: notifyPoster{client: notifyClient, sleep: notifySleep},
		endpoint:     api + "chat.postMessage",
		token:        token,
		channel:      ch,
		title:        q.Get("title"),
	}, quiet, nil
}

func slackChannelOf(u *url.URL) string {
	if u.Host != "" {
		return u.Host
	}
	if u.Fragment != "" {
		return "#" + u.Fragment
	}
	return ""
}

func (s *slackNotifier) send(ctx context.Context, e deployEvent) error {
	body, err := json.Marshal(slackMessage(s.channel, s.title, e))
	if err != nil {
		return fmt.Errorf("slack: encode message: %w", err)
	}
	hdr := http.Header{"Authorization": {"Bearer " + s.token}}
	status, data, err := s.post(ctx, s.endpoint, "slack chat.postMessage", hdr, body)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("slack chat.postMessage: HTTP %d", status)
	}
	var res struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("slack chat.postMessage: answer is not JSON")
	}
	if !res.OK {
		return fmt.Errorf("slack chat.postMessage to %s: %s", s.channel, slackErrorCode(res.Error))
	}
	return nil
}

// slackErrorCode passes on Slack's error codes (invalid_auth,
// channel_not_found) and nothing else the answer might echo.
func slackErrorCode(s string) string {
	if s == "" || len(s) > 64 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "not ok"
	}
	return s
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackAttachment struct {
	Color  string       `json:"color"`
	Blocks []slackBlock `json:"blocks"`
}

type slackPost struct {
	Channel     string            `json:"channel"`
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments"`
}

func slackMessage(channel, title string, e deployEvent) slackPost {
	app := notifyAppName(title, e)
	head := notifyHeadline(app, e)
	blocks := []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: "*" + slackEscape(head) + "*"}}}
	if e.Error != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: slackCode(e.Error)}})
	}
	for _, h := range e.Hooks {
		if h.ExitCode == 0 && h.Error == "" {
			continue
		}
		txt := fmt.Sprintf("hook %s failed (%s)", h.Name, hookFailure(h))
		if h.Output != "" {
			txt += "\n" + slackCode(h.Output)
		} else {
			txt = slackEscape(txt)
		}
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: txt}})
	}
	if d := notifyDetails(e); d != "" {
		blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: slackEscape(d)}}})
	}
	fallback := head
	if e.Error != "" {
		fallback += ": " + notifyClip(e.Error)
	}
	return slackPost{
		Channel:     channel,
		Text:        fallback,
		Attachments: []slackAttachment{{Color: slackColor(e.Kind), Blocks: blocks}},
	}
}

func slackColor(kind string) string {
	switch kind {
	case eventDeployed:
		return "good"
	case eventRolledBack:
		return "warning"
	case eventFailed, eventDown:
		return "danger"
	}
	return "#439fe0"
}

// slackEscape escapes the three characters Slack's mrkdwn treats as markup.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackCode(s string) string {
	return "```" + slackEscape(strings.ReplaceAll(notifyClip(s), "```", "'''")) + "```"
}
