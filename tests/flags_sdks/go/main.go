// Drives the official Go SDKs against a running gapless flag service for tests/flags_sdks/test_go_sdks.py.
//
// Reads one JSON job from stdin and writes JSON lines to stdout, as node/sdks.mjs does:
//
//	{"mode": "evaluate", "url", "token", "flags", "contexts", "ofrepEvery"} -> {"unleash": [...], "ofrep": [...]}
//	{"mode": "watch", "url", "token", "flag", "context"} -> {"ready": true}, then {"off": ms}
//	{"mode": "watch", "sdk": "ofrep", ...}: the same through the OFREP provider (one evaluation request each)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	ofrep "github.com/open-feature/go-sdk-contrib/providers/ofrep"
	"github.com/open-feature/go-sdk/openfeature"
	unleash "github.com/Unleash/unleash-go-sdk/v5"
	ucontext "github.com/Unleash/unleash-go-sdk/v5/context"
)

type unleashContext struct {
	UserID        string            `json:"userId"`
	SessionID     string            `json:"sessionId"`
	RemoteAddress string            `json:"remoteAddress"`
	Environment   string            `json:"environment"`
	Properties    map[string]string `json:"properties"`
}

type job struct {
	Mode       string           `json:"mode"`
	URL        string           `json:"url"`
	Token      string           `json:"token"`
	Flags      []string         `json:"flags"`
	Contexts   []unleashContext `json:"contexts"`
	OfrepEvery int              `json:"ofrepEvery"`
	Flag       string           `json:"flag"`
	Sdk        string           `json:"sdk"`
	Context    unleashContext   `json:"context"`
}

func (c unleashContext) sdk() ucontext.Context {
	return ucontext.Context{
		UserId: c.UserID, SessionId: c.SessionID, RemoteAddress: c.RemoteAddress,
		Environment: c.Environment, Properties: c.Properties,
	}
}

func emit(v any) {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
}

func start(j job, name string, refresh time.Duration) *unleash.Client {
	client, err := unleash.NewClient(
		unleash.WithAppName(name),
		unleash.WithInstanceId(name),
		unleash.WithUrl(j.URL+"/api/"),
		unleash.WithCustomHeaders(http.Header{"Authorization": {j.Token}}),
		unleash.WithRefreshInterval(refresh),
		unleash.WithMetricsInterval(time.Second),
		unleash.WithListener(&unleash.NoopListener{}),
	)
	if err != nil {
		panic(err)
	}
	client.WaitForReady()
	return client
}

func main() {
	var j job
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		panic(err)
	}
	switch j.Mode {
	case "evaluate":
		client := start(j, "go-conformance", time.Second)
		defer client.Close()
		provider := ofrep.NewProvider(j.URL, ofrep.WithBearerToken(j.Token))
		if err := openfeature.SetProviderAndWait(provider); err != nil {
			panic(err)
		}
		of := openfeature.NewClient("conformance")
		answers := map[string][]any{"unleash": {}, "ofrep": {}}
		for i, c := range j.Contexts {
			ctx := c.sdk()
			for _, flag := range j.Flags {
				v := client.GetVariant(flag, unleash.WithVariantContext(ctx))
				name := "disabled"
				if v.Enabled {
					name = v.Name
				}
				answers["unleash"] = append(answers["unleash"], []any{client.IsEnabled(flag, unleash.WithContext(ctx)), name})
				if i%j.OfrepEvery != 0 {
					answers["ofrep"] = append(answers["ofrep"], nil)
					continue
				}
				attrs := map[string]any{}
				for k, v := range c.Properties {
					attrs[k] = v
				}
				for k, v := range map[string]string{"userId": c.UserID, "sessionId": c.SessionID, "remoteAddress": c.RemoteAddress, "environment": c.Environment} {
					if v != "" {
						attrs[k] = v
					}
				}
				key, _ := attrs["targetingKey"].(string)
				delete(attrs, "targetingKey")
				d, _ := of.BooleanValueDetails(context.Background(), flag, false, openfeature.NewEvaluationContext(key, attrs))
				answers["ofrep"] = append(answers["ofrep"], []any{d.Value, d.Variant, string(d.Reason)})
			}
		}
		emit(answers)
	case "watch":
		if j.Sdk == "ofrep" {
			watchOfrep(j)
			return
		}
		client := start(j, "go-watch", time.Second)
		defer client.Close()
		ctx := j.Context.sdk()
		for !client.IsEnabled(j.Flag, unleash.WithContext(ctx)) {
			time.Sleep(10 * time.Millisecond)
		}
		emit(map[string]bool{"ready": true})
		started := time.Now()
		for client.IsEnabled(j.Flag, unleash.WithContext(ctx)) {
			time.Sleep(5 * time.Millisecond)
		}
		emit(map[string]int64{"off": time.Since(started).Milliseconds()})
	}
}

// watchOfrep waits until the OFREP provider evaluates the flag on, says so, and times until it is off.
func watchOfrep(j job) {
	provider := ofrep.NewProvider(j.URL, ofrep.WithBearerToken(j.Token))
	if err := openfeature.SetProviderAndWait(provider); err != nil {
		panic(err)
	}
	of := openfeature.NewClient("watch")
	ctx := openfeature.NewEvaluationContext(j.Context.UserID, map[string]any{"userId": j.Context.UserID})
	on := func() bool {
		d, err := of.BooleanValueDetails(context.Background(), j.Flag, false, ctx)
		if err != nil && d.ErrorCode != "" && d.ErrorCode != openfeature.GeneralCode {
			panic(err) // a wrong answer (bad token, unknown flag), not the service being busy
		}
		return d.Value
	}
	for !on() {
		time.Sleep(10 * time.Millisecond)
	}
	emit(map[string]bool{"ready": true})
	started := time.Now()
	for on() {
		time.Sleep(5 * time.Millisecond)
	}
	emit(map[string]int64{"off": time.Since(started).Milliseconds()})
}
