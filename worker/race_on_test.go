//go:build race

package worker

// raceEnabled: the race detector slows the fleet several times; throughput is not judged then.
const raceEnabled = true
