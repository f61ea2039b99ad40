// Package serverproc runs the nearcast binary's `serve` as a process of
// its own and stops it, for the load bench (cmd/nearcast-bench) and the
// tests that run several replicas.
package serverproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"time"
)

// Listening finds the server's address in what `nearcast serve` prints
// at start ("Nearcast is listening on http://…").
var Listening = regexp.MustCompile(`listening on (http://[0-9.:]+)`)

// Spawn runs `bin serve` as a process of its own, with env added to this
// process's environment, and waits until it says where it listens. What
// it prints after that goes to log.
func Spawn(bin string, env map[string]string, log io.Writer, wait time.Duration) (string, *exec.Cmd, error) {
	cmd := exec.Command(bin, "serve")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			if found {
				fmt.Fprintln(log, sc.Text())
			} else if m := Listening.FindStringSubmatch(sc.Text()); m != nil {
				found = true
				urls <- m[1]
			}
		}
	}()
	select {
	case u := <-urls:
		return u, cmd, nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, fmt.Errorf("%s serve did not say where it listens within %s", bin, wait)
	}
}

// Stop asks a server to stop (SIGTERM) and waits for it, killing it
// after grace.
func Stop(cmd *exec.Cmd, grace time.Duration) error {
	if cmd.ProcessState != nil {
		return nil // stopped already
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("did not stop on SIGTERM; killed")
	}
}
