package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// config is everything dewy needs to run, from flags, DEWY_* variables and
// the TOML file (flags win over variables, variables over the file).
type config struct {
	Command string // "server" or "assets"

	Registry    *url.URL // with the shared selection options removed
	RegistryRaw string   // as given, for messages
	RegistryBy  string   // where it was given: --registry, DEWY_REGISTRY or the file's key
	Select      selectOptions
	Cache       string
	Notifiers   []string
	Root        string
	Interval    time.Duration
	Keep        int
	LogLevel    slog.Level
	LogFormat   string
	HostID      string

	BeforeHook  string
	AfterHook   string
	FailureHook string
	HookTimeout time.Duration

	AuditLog    string
	Admin       string // admin HTTP endpoint; "" = off
	AdminPublic bool
	JSON        bool           // dewy status --json
	Control     controlRequest // dewy rollback, pause, resume, pin; status --fleet
	History     int            // dewy history: rows to print

	Once            bool
	AllowUnverified bool
	RequireChecksum bool // the default; accepted so that old configs still load
	RetryFailed     bool
	Limits          extractLimits
	Verifier        *sigVerifier // --verify-key; nil: signatures not required

	Server serverConfig
	// Proxy is how `dewy server` reaches its application: "" hands it
	// the listening sockets; proxyHTTP or proxyTCP gives each generation
	// a private port and forwards to the live one (see proxy.go).
	Proxy string
}

var errHelp = errors.New("help requested")

// usageError is bad input from the operator: dewy exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// setting is one option, reachable as a flag, a DEWY_* variable and a TOML key.
type setting struct {
	key      string // TOML key; the long flag is the key with '-' for '_'
	short    string // one-letter flag, if any
	usage    string
	repeated bool     // may be given several times; a later source replaces an earlier one's list
	bool     bool     // a flag that takes no value
	commands []string // which commands accept it; nil = both
	set      func(c *config, v string) error
}

func (o setting) flagName() string { return strings.ReplaceAll(o.key, "_", "-") }
func (o setting) envName() string  { return "DEWY_" + strings.ToUpper(o.key) }

var bothCommands, serverOnly, assetsOnly = []string(nil), []string{"server"}, []string{"assets"}

func settings() []setting {
	return []setting{
		{key: "registry", usage: "registry URL (" + orList(schemeNames(registrySchemes)) + ")", set: func(c *config, v string) error {
			c.RegistryRaw = v
			return nil
		}},
		{key: "slot", short: "s", usage: "deployment slot: only tags whose build metadata is NAME (v1.2.3+NAME)", set: func(c *config, v string) error {
			if v != "" && !validIdents(v, false) {
				return errors.New("want build metadata such as blue or green: letters, digits, '-' and '.'")
			}
			c.Select.Slot = v
			return nil
		}},
		{key: "calver", usage: "tags are calendar versions of this format, e.g. YYYY.0M.0D.MICRO", set: func(c *config, v string) error {
			if v == "" {
				c.Select.CalVer = nil
				return nil
			}
			f, err := parseCalverFormat(v)
			c.Select.CalVer = f
			return err
		}},
		{key: "cache", usage: "cache URL (" + orList(schemeNames(cacheSchemes)) + ")", set: func(c *config, v string) error { c.Cache = v; return nil }},
		{key: "notifier", usage: "notification URL (" + orList(schemeNames(notifierSchemes)) + "; repeatable)", repeated: true, set: func(c *config, v string) error {
			c.Notifiers = append(c.Notifiers, v)
			return nil
		}},
		{key: "root", usage: "directory holding releases/ and current", set: func(c *config, v string) error {
			if v == "" {
				return errors.New("empty directory")
			}
			c.Root = v
			return nil
		}},
		{key: "interval", short: "i", usage: "poll interval (30s, 5m, or plain seconds)", set: func(c *config, v string) error {
			d, err := parseDuration(v)
			if err == nil && d <= 0 {
				err = errors.New("must be positive")
			}
			c.Interval = d
			return err
		}},
		{key: "keep", usage: "releases kept on disk", set: func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("not a whole number")
			}
			if n < 0 {
				return errors.New("must not be negative")
			}
			c.Keep = n
			return nil
		}},
		{key: "log_level", short: "l", usage: "debug, info, warn or error", set: func(c *config, v string) error {
			switch strings.ToLower(v) {
			case "debug":
				c.LogLevel = slog.LevelDebug
			case "info":
				c.LogLevel = slog.LevelInfo
			case "warn", "warning":
				c.LogLevel = slog.LevelWarn
			case "error":
				c.LogLevel = slog.LevelError
			default:
				return errors.New("want debug, info, warn or error")
			}
			return nil
		}},
		{key: "log_format", short: "f", usage: "text or json", set: func(c *config, v string) error {
			if v != "text" && v != "json" {
				return errors.New("want text or json")
			}
			c.LogFormat = v
			return nil
		}},
		{key: "host_id", usage: "this host's name in reports and fleet keys (default: hostname)", set: func(c *config, v string) error {
			if strings.ContainsAny(v, "/ \t\n") {
				return errors.New("want a name without slashes or spaces")
			}
			c.HostID = v
			return nil
		}},
		{key: "audit_log", usage: "where the audit log is appended (default ROOT/audit.jsonl)", set: func(c *config, v string) error {
			c.AuditLog = v // empty: the default
			return nil
		}},
		{key: "admin", usage: "admin HTTP endpoint: 127.0.0.1:17539 or unix:/run/dewy.sock (off by default)", set: func(c *config, v string) error {
			c.Admin = v
			return nil
		}},
		{key: "admin_public", bool: true, usage: "allow --admin on a non-loopback address", set: boolSetter(func(c *config) *bool { return &c.AdminPublic })},
		{key: "before_deploy_hook", usage: "shell command run before a release is swapped in", set: hookSetter(func(c *config) *string { return &c.BeforeHook })},
		{key: "after_deploy_hook", usage: "shell command run once a new release is live", set: hookSetter(func(c *config) *string { return &c.AfterHook })},
		{key: "on_failure_hook", usage: "shell command run when a deploy fails", set: hookSetter(func(c *config) *string { return &c.FailureHook })},
		{key: "hook_timeout", usage: "time a hook may run before it is killed", set: positiveDuration(func(c *config) *time.Duration { return &c.HookTimeout })},
		{key: "allow_unverified", bool: true, usage: "deploy releases that publish no digest (logs a warning on each)", set: boolSetter(func(c *config) *bool { return &c.AllowUnverified })},
		{key: "require_checksum", bool: true, usage: "refuse releases that publish no digest (the default; kept for old configs)", set: boolSetter(func(c *config) *bool { return &c.RequireChecksum })},
		{key: "retry_failed", bool: true, usage: "retry releases that failed their health check", set: boolSetter(func(c *config) *bool { return &c.RetryFailed })},
		{key: "verify_key", usage: "require signed releases: minisign:<key or .pub file> or cosign:<cosign.pub>", set: func(c *config, v string) error {
			if v == "" {
				c.Verifier = nil
				return nil
			}
			ver, err := parseVerifyKey(v)
			if err != nil {
				return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("verify key %q: ", v)))
			}
			c.Verifier = ver
			return nil
		}},
		{key: "max_unpack_size", usage: "largest unpacked release (e.g. 4GiB)", set: func(c *config, v string) error {
			n, err := parseSize(v)
			c.Limits.MaxBytes = n
			return err
		}},
		{key: "max_unpack_entries", usage: "most files in one release", set: func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return errors.New("want a positive whole number")
			}
			c.Limits.MaxEntries = n
			return nil
		}},
		{key: "once", bool: true, commands: assetsOnly, usage: "deploy the newest release if needed, then exit", set: boolSetter(func(c *config) *bool { return &c.Once })},

		{key: "port", short: "p", repeated: true, commands: serverOnly, usage: "listener: 8000, 8000-8003, 127.0.0.1:8000, [::1]:8000, unix:/path (repeatable, comma lists)", set: func(c *config, v string) error {
			for _, p := range strings.Split(v, ",") {
				c.Server.Ports = append(c.Server.Ports, strings.TrimSpace(p))
			}
			return nil
		}},
		{key: "health_path", commands: serverOnly, usage: "HTTP path that answers 2xx once the application is ready", set: func(c *config, v string) error {
			if v != "" && !strings.HasPrefix(v, "/") {
				return errors.New("must start with /")
			}
			c.Server.HealthPath = v
			return nil
		}},
		{key: "health_timeout", commands: serverOnly, usage: "how long a new release may take to become ready", set: positiveDuration(func(c *config) *time.Duration { return &c.Server.HealthTimeout })},
		{key: "ready_delay", commands: serverOnly, usage: "without a health path or READY=1: how long a new process must stay up", set: func(c *config, v string) error {
			d, err := parseDuration(v)
			if err == nil && d < 0 {
				err = errors.New("must not be negative")
			}
			c.Server.ReadyDelay = d
			return err
		}},
		{key: "drain_timeout", commands: serverOnly, usage: "how long the old process may take to exit before SIGKILL", set: positiveDuration(func(c *config) *time.Duration { return &c.Server.DrainTimeout })},
		{key: "stop_signal", commands: serverOnly, usage: "signal that asks the application to stop (SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2)", set: func(c *config, v string) error {
			s, ok := signalNames[strings.TrimPrefix(strings.ToUpper(v), "SIG")]
			if !ok {
				return errors.New("want SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2")
			}
			c.Server.StopSignal = s
			return nil
		}},
		{key: "proxy", bool: true, commands: serverOnly, usage: "forward to the application on a private port instead of handing it the sockets: http (also true or --proxy alone), tcp or off", set: func(c *config, v string) error {
			switch strings.ToLower(v) {
			case "true", "http":
				c.Proxy = proxyHTTP
			case "tcp":
				c.Proxy = proxyTCP
			case "off", "false":
				c.Proxy = ""
			default:
				return errors.New("want http, tcp, true or off")
			}
			return nil
		}},
		{key: "args", repeated: true, commands: serverOnly, usage: "(TOML only) the application's command line", set: func(c *config, v string) error {
			c.Server.Command = append(c.Server.Command, v)
			return nil
		}},
	}
}

var signalNames = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

func hookSetter(field func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error {
		if strings.ContainsRune(v, 0) {
			return errors.New("contains a NUL byte")
		}
		*field(c) = v
		return nil
	}
}

func boolSetter(field func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("want true or false")
		}
		*field(c) = b
		return nil
	}
}

func positiveDuration(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := parseDuration(v)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		*field(c) = d
		return err
	}
}

// parseDuration takes a Go duration ("30s") or plain seconds ("30").
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n > 1e9 || n != n {
			return 0, errors.New("too large")
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("want a duration such as 30s or 5m, or seconds")
	}
	return d, nil
}

// parseSize takes bytes with an optional KiB/MiB/GiB/TiB (or KB/MB/GB) suffix.
func parseSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("want a positive size such as 4GiB or 500MiB")
	}
	return n * mult, nil
}

func defaultConfig() *config {
	return &config{
		Root:        ".",
		Interval:    30 * time.Second,
		Keep:        5,
		LogLevel:    slog.LevelInfo,
		LogFormat:   "text",
		HookTimeout: 5 * time.Minute,
		Limits:      defaultExtractLimits,
		Server: serverConfig{
			HealthTimeout: 30 * time.Second,
			ReadyDelay:    time.Second,
			DrainTimeout:  30 * time.Second,
			StopSignal:    syscall.SIGTERM,
		},
	}
}

// parseArgs turns the command line, DEWY_* variables and the TOML file
// into a validated config. Every error names the flag, key or value at fault.
func parseArgs(args []string, getenv func(string) string) (*config, error) {
	command, args, done, err := parseCommand(args, getenv)
	if done != nil || err != nil {
		return done, err
	}
	var appArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, appArgs = args[:i], args[i+1:]
	}
	opts := settings()
	cl, err := parseFlags(args, opts)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	// fromFile: keys set by the file or a variable, for the command check.
	fromFile := map[string]bool{}
	if command, err = cfg.applyFile(cl.configFile, command, opts, fromFile); err != nil {
		return nil, err
	}
	if err := cfg.applyEnv(opts, getenv, fromFile); err != nil {
		return nil, err
	}
	for _, g := range cl.order {
		if err := cfg.apply(g.opt, "-"+dashes(g.name)+g.name, g.vals); err != nil {
			return nil, err
		}
	}
	if len(appArgs) > 0 {
		cfg.Server.Command = appArgs
	}
	if err := checkCommand(command, opts, cl, fromFile, appArgs); err != nil {
		return nil, err
	}
	cfg.Command = command
	return cfg, cfg.validate(getenv)
}

// parseCommand takes the command word off args. Commands other than server
// and assets are parsed here whole: done is their config.
func parseCommand(args []string, getenv func(string) string) (command string, rest []string, done *config, err error) {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		return "", nil, &config{Command: "version"}, nil // upstream Dewy's spelling
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args, nil, nil // the command may come from the file
	}
	command, rest = args[0], args[1:]
	switch command {
	case "server", "assets":
		return command, rest, nil, nil
	case "help":
		return "", nil, nil, errHelp
	case "history":
		done, err = parseHistoryArgs(rest, getenv)
	case "status":
		done, err = parseStatusArgs(rest, getenv)
	case "rollback", "pause", "resume", "pin":
		done, err = parseControlArgs(command, rest, getenv)
	case "version":
		if len(rest) > 0 {
			return "", nil, nil, usagef("`dewy version` takes no arguments, got %q", rest[0])
		}
		done = &config{Command: "version"}
	default:
		return "", nil, nil, usagef("unknown command %q (want server, assets, history, status, rollback, pause, resume, pin, version or help)", command)
	}
	return command, nil, done, err
}

// givenFlag is one setting as the command line gave it.
type givenFlag struct {
	opt  setting
	name string // the spelling used last (-i or --interval), for messages
	vals []string
}

// commandLine is what parseFlags read: the settings file and the settings
// in the order they were first given.
type commandLine struct {
	configFile string
	order      []*givenFlag
	byKey      map[string]*givenFlag
}

// parseFlags reads the flags. Values are applied later, after the file's
// and the variables', so that flags win.
func parseFlags(args []string, opts []setting) (*commandLine, error) {
	cl := &commandLine{byKey: map[string]*givenFlag{}}
	fs := flag.NewFlagSet("dewy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cl.configFile, "c", "", "")
	fs.StringVar(&cl.configFile, "config", "", "")
	for _, o := range opts {
		if o.key == "args" {
			continue // the application's argv comes after "--" on the command line
		}
		v := &flagValue{isBool: o.bool, add: func(name, s string) error {
			g := cl.byKey[o.key]
			if g == nil {
				g = &givenFlag{opt: o}
				cl.byKey[o.key] = g
				cl.order = append(cl.order, g)
			}
			if !o.repeated {
				g.vals = nil
			}
			g.name = name
			g.vals = append(g.vals, s)
			return nil
		}}
		fs.Var(v.named(o.flagName()), o.flagName(), o.usage)
		if o.short != "" {
			fs.Var(v.named(o.short), o.short, o.usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, &usageError{escapeControl(err.Error())}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (the application's command goes after --)", fs.Arg(0))
	}
	return cl, nil
}

// apply sets o from one source; a repeated setting's values replace those
// of an earlier source.
func (c *config) apply(o setting, source string, vals []string) error {
	if o.repeated {
		switch o.key {
		case "notifier":
			c.Notifiers = nil
		case "port":
			c.Server.Ports = nil
		case "args":
			c.Server.Command = nil
		}
	}
	for _, v := range vals {
		if err := o.set(c, v); err != nil {
			return usagef("%s %q: %v", source, v, err)
		}
	}
	if o.key == "registry" {
		c.RegistryBy = source
	}
	return nil
}

// applyFile applies the TOML file, if any, and returns the command: the
// command line's, else the file's.
func (c *config) applyFile(path, command string, opts []setting, seen map[string]bool) (string, error) {
	if strings.Contains(path, "://") {
		// upstream Dewy's -c is its cache URL; here -c is the file.
		return "", usagef("-c %q: -c names the TOML settings file; a cache URL goes to --cache", redactRaw(path))
	}
	if path == "" {
		return command, nil
	}
	fileCmd, err := loadTOML(path, opts, c.apply, seen)
	switch {
	case err != nil:
		return "", err
	case command == "":
		return fileCmd, nil
	case fileCmd != "" && fileCmd != command:
		return "", usagef("%s: command = %q, but the command line says %q", path, fileCmd, command)
	}
	return command, nil
}

// applyEnv applies the DEWY_* variables; a repeated setting's values are
// separated by spaces.
func (c *config) applyEnv(opts []setting, getenv func(string) string, seen map[string]bool) error {
	for _, o := range opts {
		v := getenv(o.envName())
		if v == "" {
			continue
		}
		vals := []string{v}
		if o.repeated {
			vals = strings.Split(v, " ")
		}
		if err := c.apply(o, o.envName(), vals); err != nil {
			return err
		}
		seen[o.key] = true
	}
	return nil
}

// checkCommand refuses settings the command does not use.
func checkCommand(command string, opts []setting, cl *commandLine, fromFile map[string]bool, appArgs []string) error {
	if command == "" {
		return usagef("no command: want `dewy server`, `dewy assets`, or `command = ...` in the file given with -c")
	}
	for _, o := range opts {
		if o.commands == nil || slices.Contains(o.commands, command) {
			continue
		}
		if g := cl.byKey[o.key]; g != nil {
			return usagef("flag -%s%s is not used by `dewy %s`", dashes(g.name), g.name, command)
		}
		if fromFile[o.key] {
			return usagef("%s is not used by `dewy %s`", o.key, command)
		}
	}
	if command == "assets" && len(appArgs) > 0 {
		return usagef("`dewy assets` runs no application; remove %q after --", strings.Join(appArgs, " "))
	}
	return nil
}

func dashes(name string) string {
	if len(name) == 1 {
		return ""
	}
	return "-"
}

// validate checks what single values cannot: required settings, and every
// URL as run would build it, so that a bad one stops dewy before it
// touches the disk.
func (c *config) validate(getenv func(string) string) error {
	if c.RegistryRaw == "" {
		return usagef("--registry is required (for example --registry ghr://owner/repo or file:///srv/releases)")
	}
	if err := c.validateRegistry(getenv); err != nil {
		return err
	}
	if err := c.validateServer(); err != nil {
		return err
	}
	if c.AllowUnverified && c.RequireChecksum {
		return usagef("--allow-unverified and --require-checksum contradict each other; require_checksum is the default, drop it")
	}
	if c.HostID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.HostID = h
	}
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return usagef("--root %q: %v", c.Root, err)
	}
	c.Root = root
	if c.AuditLog == "" {
		c.AuditLog = filepath.Join(root, "audit.jsonl")
	}
	return c.validateURLs(getenv)
}

// validateRegistry takes the shared options off the registry URL and lets
// the registry's scheme row judge the rest.
func (c *config) validateRegistry(getenv func(string) string) error {
	u, sel, err := parseRegistryURL(c.RegistryRaw)
	if err != nil {
		return &usageError{c.registryMessage(err.Error())}
	}
	if err := checkRegistryURL(u, getenv); err != nil {
		return &usageError{c.registryMessage(fmt.Sprintf("--registry %q: %v", redactRaw(c.RegistryRaw), err))}
	}
	sel.Slot, sel.CalVer = c.Select.Slot, c.Select.CalVer // global settings, not URL options
	c.Registry, c.Select = u, sel
	c.Select.GOOS, c.Select.GOARCH = runtime.GOOS, runtime.GOARCH
	return nil
}

func (c *config) validateServer() error {
	if c.Command != "server" {
		return nil
	}
	if len(c.Server.Command) == 0 {
		return usagef("`dewy server` needs the application's command after -- (for example: dewy server --registry ... -- /srv/app/current/app)")
	}
	if _, err := parsePorts(c.Server.Ports); err != nil {
		return usagef("--port: %v", err)
	}
	if c.Proxy != "" && len(c.Server.Ports) == 0 {
		return usagef("--proxy=%s needs at least one --port to serve", c.Proxy)
	}
	return nil
}

// validateURLs judges the notifier and cache URLs with their scheme rows.
func (c *config) validateURLs(getenv func(string) string) error {
	for _, n := range c.Notifiers {
		if _, err := url.Parse(n); err != nil || !strings.Contains(n, "://") {
			return usagef("--notifier %q: not a URL (want %s)", redactRaw(n), orList(schemeForms(notifierSchemes)))
		}
		if err := checkNotifier(n, getenv); err != nil {
			return usagef("--notifier %q: %v", redactNotifyURL(n), err)
		}
	}
	if c.Cache == "" {
		return nil
	}
	if _, err := url.Parse(c.Cache); err != nil || !strings.Contains(c.Cache, "://") {
		return usagef("--cache %q: not a URL (want %s)", redactRaw(c.Cache), orList(schemeForms(cacheSchemes)))
	}
	if err := checkCacheURL(c.Cache); err != nil {
		return usagef("--cache %q: %v", redactRaw(c.Cache), err)
	}
	return nil
}

// parseRegistryURL checks the URL and takes out the options every registry
// shares, leaving the backend's own options on the URL.
func parseRegistryURL(raw string) (*url.URL, selectOptions, error) {
	var sel selectOptions
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, sel, fmt.Errorf("--registry %q: not a URL (want %s)", redactRaw(raw), orList(schemeForms(registrySchemes)))
	}
	if _, err := lookupScheme(registrySchemes, u.Scheme); err != nil {
		return nil, sel, fmt.Errorf("--registry %q: %v", redactRaw(raw), err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, sel, fmt.Errorf("--registry %q: bad query: %v", redactRaw(raw), err)
	}
	if v, ok := q["pre-release"]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			return nil, sel, fmt.Errorf("--registry setting pre-release=%q: want true or false", v[0])
		}
		sel.PreRelease = b
		q.Del("pre-release")
	}
	if v, ok := q["artifact"]; ok {
		if v[0] == "" || strings.ContainsAny(v[0], "/\\") {
			return nil, sel, fmt.Errorf("--registry setting artifact=%q: want an asset file name", v[0])
		}
		sel.Artifact = v[0]
		q.Del("artifact")
	}
	if v, ok := q["track"]; ok {
		t, err := parseTrack(v[0])
		if err != nil {
			return nil, sel, fmt.Errorf("--registry setting %v", err)
		}
		sel.Track = t
		q.Del("track")
	}
	u.RawQuery = q.Encode()
	return u, sel, nil
}

// redactRaw hides a password in a URL the operator typed before echoing it.
func redactRaw(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "xxxxx" + raw[i:]
		}
	}
	return raw
}

// loadTOML applies the file's keys and returns its `command`, if any.
func loadTOML(path string, opts []setting, apply func(setting, string, []string) error, seen map[string]bool) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("config file %s: %v", path, errors.Unwrap(err))
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return "", usagef("config file %s:%d:%d: %s", path, row, col, de.Error())
		}
		return "", usagef("config file %s: %v", path, err)
	}
	command := ""
	for key, raw := range doc {
		if key == "command" {
			s, ok := raw.(string)
			if !ok || (s != "server" && s != "assets") {
				return "", usagef("config file %s: command = %v: want \"server\" or \"assets\"", path, raw)
			}
			command = s
			continue
		}
		i := slices.IndexFunc(opts, func(o setting) bool { return o.key == key })
		if i < 0 {
			return "", usagef("config file %s: unknown key %q", path, key)
		}
		o := opts[i]
		vals, err := tomlStrings(raw, o.repeated)
		if err != nil {
			return "", usagef("config file %s: %s: %v", path, key, err)
		}
		if err := apply(o, path+": "+key, vals); err != nil {
			return "", err
		}
		seen[key] = true
	}
	return command, nil
}

func tomlStrings(raw any, repeated bool) ([]string, error) {
	scalar := func(v any) (string, error) {
		switch x := v.(type) {
		case string:
			return x, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
		return "", fmt.Errorf("unexpected %T value", v)
	}
	if list, ok := raw.([]any); ok {
		if !repeated {
			return nil, errors.New("takes one value, not a list")
		}
		out := make([]string, 0, len(list))
		for _, v := range list {
			s, err := scalar(v)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(raw)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// flagValue adapts an setting to the flag package, remembering which
// spelling (-i or --interval) the operator used so errors echo it.
type flagValue struct {
	isBool bool
	add    func(name, v string) error
	name   string
}

func (f *flagValue) named(n string) *flagValue {
	c := *f
	c.name = n
	return &c
}
func (f *flagValue) String() string     { return "" }
func (f *flagValue) Set(v string) error { return f.add(f.name, v) }
func (f *flagValue) IsBoolFlag() bool   { return f.isBool }

// parseHistoryArgs reads `dewy history [--root DIR] [-n 20] [--audit-log FILE]`.
func parseHistoryArgs(args []string, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", ".", "")
	n := fs.Int("n", 20, "")
	audit := fs.String("audit-log", "", "")
	if v := getenv("DEWY_ROOT"); v != "" {
		*root = v
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, &usageError{escapeControl(err.Error())}
	}
	if fs.NArg() > 0 {
		return nil, usagef("history: unexpected argument %q", fs.Arg(0))
	}
	if *n <= 0 {
		return nil, usagef("history -n %d: must be positive", *n)
	}
	c := &config{Command: "history", Root: *root, History: *n, AuditLog: *audit}
	if c.AuditLog == "" {
		c.AuditLog = filepath.Join(c.Root, "audit.jsonl")
	}
	return c, nil
}

// parseStatusArgs reads `dewy status [--admin ADDR] [--json] [--fleet]`.
func parseStatusArgs(args []string, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &config{Command: "status"}
	fs.StringVar(&c.Admin, "admin", getenv("DEWY_ADMIN"), "")
	fs.BoolVar(&c.JSON, "json", false, "")
	fs.BoolVar(&c.Control.Fleet, "fleet", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, &usageError{escapeControl(err.Error())}
	}
	if fs.NArg() > 0 {
		return nil, usagef("status: unexpected argument %q", fs.Arg(0))
	}
	return c, nil
}

// escapeControl keeps a message on one line when it quotes operator input
// holding control characters (the flag package quotes nothing).
func escapeControl(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// registryMessage names the registry setting as the operator gave it
// (DEWY_REGISTRY, the TOML key) rather than always as the flag.
func (c *config) registryMessage(msg string) string {
	if c.RegistryBy == "" || c.RegistryBy == "--registry" {
		return msg
	}
	return strings.Replace(msg, "--registry", c.RegistryBy, 1)
}
