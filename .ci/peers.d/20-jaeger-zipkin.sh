# Jaeger v2 (built with Go) and the Zipkin server (fetched with Maven) for tests/peers/, cached in ~/.cache/veil-peers.
exec bash "$(dirname "$0")/../../tests/peers/build.sh"
