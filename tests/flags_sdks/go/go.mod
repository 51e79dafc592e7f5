module gapless.test/flagsdks

go 1.23

require (
	github.com/Unleash/unleash-go-sdk/v5 v5.1.0
	github.com/open-feature/go-sdk v1.14.0
	github.com/open-feature/go-sdk-contrib/providers/ofrep v0.1.5
)

require (
	github.com/Masterminds/semver/v3 v3.3.1 // indirect
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/go-logr/logr v1.4.2 // indirect
	github.com/launchdarkly/eventsource v1.10.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	github.com/stretchr/objx v0.5.2 // indirect
	github.com/stretchr/testify v1.10.0 // indirect
	github.com/twmb/murmur3 v1.1.8 // indirect
	golang.org/x/exp v0.0.0-20240506185415-9bf2ced13842 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
