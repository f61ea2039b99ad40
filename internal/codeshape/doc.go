// Package codeshape holds no code, only a test that keeps the module's
// functions small enough to read and review (issue 15): none of the
// non-test code has a cyclomatic complexity over 30, measured as gocyclo
// measures it, and no function of the engine, the hot path every ping
// runs through, is longer than 80 lines. A function that grows past
// either bound is split by concern rather than exempted.
package codeshape
