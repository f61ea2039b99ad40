package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/rules"
)

// decodeJSON reads the request body into v strictly: the body must be JSON,
// every field must be one the contract knows, and every value must have
// the right type. All unknown fields are named at once, by JSON path.
func decodeJSON(c *fiber.Ctx, v any) error {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
	if ct != "" && ct != fiber.MIMEApplicationJSON {
		return newError(http.StatusUnsupportedMediaType, "", "send JSON with Content-Type: application/json, not %s", ct)
	}
	if len(c.Body()) > maxJSONBody {
		return newError(http.StatusRequestEntityTooLarge, "", "a JSON body is at most %d bytes", maxJSONBody)
	}
	return decodeBytes(c.Body(), v)
}

// jsonSpace is the white space JSON allows around a value (RFC 8259):
// not Go's, which has form feeds and more.
const jsonSpace = " \t\r\n"

func decodeBytes(body []byte, v any) error {
	// Most documents are right: one strict pass decodes them. Only a
	// document it refuses takes the slow path, which names every fault.
	if t := bytes.Trim(body, jsonSpace); len(t) > 0 && t[0] == '{' && plainKeys(t) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if dec.Decode(v) == nil && !dec.More() {
			if _, err := dec.Token(); err == io.EOF {
				return nil
			}
		}
	}
	return decodeSlowly(body, v)
}

// plainKeys reports whether every object key in a JSON text is plain
// lower-case ASCII without escapes. encoding/json matches keys to fields
// regardless of case; the contract's fields are all lower case, so for
// such keys its matching is exact, as the contract wants.
func plainKeys(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '"' {
			continue
		}
		plain := true
		for i++; i < len(b) && b[i] != '"'; i++ {
			switch c := b[i]; {
			case c == '\\':
				plain = false
				i++
			case c >= 'A' && c <= 'Z', c >= 0x80:
				plain = false
			}
		}
		if plain {
			continue
		}
		j := i + 1
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
			j++
		}
		if j < len(b) && b[j] == ':' {
			return false // a key that is not plain
		}
	}
	return true
}

// decodeDoc is decodeJSON for a document the caller checks whole (a
// store, a rule, a customer): unknown fields do not stop it but are
// answered, so that they are reported with the document's other faults
// in one answer (allFaults). A body that is not JSON, or a value of the
// wrong type, is still an error at once.
func decodeDoc(c *fiber.Ctx, v any) (unknown []rules.Fault, err error) {
	err = decodeJSON(c, v)
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || !allUnknown(ve.Faults) {
		return nil, err
	}
	// Only unknown fields: decode the rest, which encoding/json does by
	// leaving them out.
	if err := json.Unmarshal(c.Body(), v); err != nil {
		return nil, decodeSlowly(c.Body(), v)
	}
	return ve.Faults, nil
}

func allUnknown(fs []rules.Fault) bool {
	for _, f := range fs {
		if !strings.HasPrefix(f.Message, "unknown field ") {
			return false
		}
	}
	return len(fs) > 0
}

// allFaults is err with the unknown fields beside its own faults, in one
// answer: err alone when there are none; the unknown fields alone when
// err is nil (a document with unknown fields is refused all the same); err
// alone when it is not about the document (Redis away, say).
func allFaults(unknown []rules.Fault, err error) error {
	if len(unknown) == 0 {
		return err
	}
	var ve *rules.ValidationError
	switch {
	case err == nil:
		return &rules.ValidationError{Faults: unknown}
	case errors.As(err, &ve):
		return &rules.ValidationError{Faults: append(slices.Clone(unknown), ve.Faults...)}
	}
	return err
}

// decodeSlowly decodes a document into a generic value first, to name
// every unknown field by path and the first value of a wrong type.
func decodeSlowly(body []byte, v any) error {
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		return newError(http.StatusBadRequest, "", "the request body is empty; send a JSON object")
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return syntaxError(err)
	}
	if dec.More() {
		return newError(http.StatusBadRequest, "", "malformed JSON: more than one value in the body")
	}
	if _, ok := generic.(map[string]any); !ok {
		return newError(http.StatusBadRequest, "", "the body must be a JSON object")
	}
	var fs []rules.Fault
	unknownFields(generic, reflect.TypeOf(v), "", &fs)
	if len(fs) > 0 {
		return &rules.ValidationError{Faults: fs}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := indexedField(generic, te.Field, te.Value)
			return newError(http.StatusBadRequest, field, "%s must be %s, not %s", fieldName(field), typeName(te.Type), te.Value)
		}
		return newError(http.StatusBadRequest, "", "malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// indexedField finds in the document the value of the wrong kind that
// encoding/json names by a path without the lists' indexes
// ("offer.variants.weight"), and answers its path with them
// ("offer.variants[1].weight"); the path as given if none is found.
func indexedField(doc any, field, value string) string {
	if field == "" {
		return field
	}
	// "number 0.5": a number, and which; "string": any string.
	want, literal, _ := strings.Cut(value, " ")
	matches := func(v any) bool {
		if jsonKind(v) != want {
			return false
		}
		n, ok := v.(json.Number)
		return literal == "" || !ok || n.String() == literal
	}
	parts := strings.Split(field, ".")
	var walk func(v any, i int, path string) (string, bool)
	walk = func(v any, i int, path string) (string, bool) {
		if i == len(parts) && matches(v) {
			return path, true
		}
		if list, ok := v.([]any); ok {
			for k, x := range list {
				if p, ok := walk(x, i, fmt.Sprintf("%s[%d]", path, k)); ok {
					return p, true
				}
			}
			return "", false
		}
		m, ok := v.(map[string]any)
		if !ok || i == len(parts) {
			return "", false
		}
		x, ok := m[parts[i]]
		if !ok {
			return "", false
		}
		next := parts[i]
		if path != "" {
			next = path + "." + parts[i]
		}
		return walk(x, i+1, next)
	}
	if p, ok := walk(doc, 0, ""); ok {
		return p
	}
	return field
}

// jsonKind is the kind encoding/json names a decoded value by.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return newError(http.StatusBadRequest, "", "malformed JSON at byte %d: %s", se.Offset, se.Error())
	}
	return newError(http.StatusBadRequest, "", "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func fieldName(f string) string {
	if f == "" {
		return "the body"
	}
	return f
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// unknownFields walks a decoded JSON value beside the Go type it will be
// decoded into and reports every object key that type does not have.
// Keys match exactly: "Lat" is not "lat".
func unknownFields(v any, t reflect.Type, path string, out *[]rules.Fault) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				*out = append(*out, rules.Fault{Field: join(k), Message: fmt.Sprintf("unknown field %q", k)})
				continue
			}
			unknownFields(obj[k], f.Type, join(k), out)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, e := range obj {
			unknownFields(e, t.Elem(), join(k), out)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			unknownFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag := f.Tag.Get("json"); tag != "" {
			if tag == "-" {
				continue
			}
			if n := strings.Split(tag, ",")[0]; n != "" {
				name = n
			}
		}
		out[name] = f
	}
	return out
}
