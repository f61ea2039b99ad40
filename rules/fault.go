// Package rules owns the documents marketers author — stores (the
// geofences) and offer rules — and the customer profile they are written
// against: their validation with JSON field paths, compiling audience
// expressions and templates, the Redis catalog that keeps them with
// versions and change notifications, and the immutable compiled Snapshot
// every replica evaluates pings against. It knows nothing of HTTP or FCM.
package rules

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned for a store, rule or customer that does not exist.
var ErrNotFound = errors.New("not found")

// Fault is one problem with a document, at a JSON path such as
// "offer.title.de" or "trigger.stores.ids[2]".
type Fault struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	// Precondition marks a well-formed value the engine cannot accept (an
	// expression that does not type-check), as opposed to a malformed one.
	Precondition bool `json:"-"`
}

// ValidationError lists every fault found in a document at once.
type ValidationError struct {
	Faults []Fault
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Faults))
	for i, f := range e.Faults {
		if f.Field != "" {
			msgs[i] = f.Field + ": " + f.Message
		} else {
			msgs[i] = f.Message
		}
	}
	return strings.Join(msgs, "; ")
}

// Precondition reports whether every fault is a precondition fault.
func (e *ValidationError) Precondition() bool {
	for _, f := range e.Faults {
		if !f.Precondition {
			return false
		}
	}
	return len(e.Faults) > 0
}

// faults collects problems while a document is checked.
type faults []Fault

func (fs *faults) add(field, format string, args ...any) {
	*fs = append(*fs, Fault{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (fs *faults) addPrecondition(field, format string, args ...any) {
	*fs = append(*fs, Fault{Field: field, Message: fmt.Sprintf(format, args...), Precondition: true})
}

func (fs faults) err() error {
	if len(fs) == 0 {
		return nil
	}
	return &ValidationError{Faults: fs}
}

// Invalid returns a ValidationError with one fault.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Faults: []Fault{{Field: field, Message: fmt.Sprintf(format, args...)}}}
}

// ValidID checks the id of a store, rule, customer or device: 1 to 128
// characters from letters, digits and . _ - : @ +. Braces are excluded so
// that an id can never change the Redis Cluster hash tag of a key.
func ValidID(field, id string) error {
	if id == "" || len(id) > 128 {
		return Invalid(field, "%s must be 1 to 128 characters", field)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._-:@+", r):
		default:
			return Invalid(field, "%s may only hold letters, digits and . _ - : @ +", field)
		}
	}
	return nil
}
