//go:build race

package delivery

// raceEnabled: the race detector multiplies memory use, so memory figures
// are not measured under it.
const raceEnabled = true
