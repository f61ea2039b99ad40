package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// The catalog of attributes: the names customers' profiles carry, with
// their types and how many profiles carry each, learned as profiles are
// written, and the names the operator declares. A rule's save checks the
// attributes its audience names against it (rules.Catalog.CheckAttributes),
// so that a typo (customer.attributes.teir) is refused, not left to
// match nobody.
//
// Learning costs a profile write nothing more in its own slot: the script
// that writes a profile answers the document it replaced, whose
// attributes (attrLinesOf) are those it was counted with; the write then
// counts the difference (names gained +1, lost -1) in the catalog,
// which lies in a slot of its own ({attrs}), in a second round trip (one
// per batch of a bulk upload, whatever its size), and only when the
// attributes changed. Each write counts against exactly the profile it
// replaced, and the counts move by HINCRBY, so concurrent writes add up;
// an erasure counts the profile's attributes lost. What is not exact:
//   - a profile written before the catalog existed is not counted until it
//     is written again (declare its attributes meanwhile);
//   - a write whose second step fails (Redis gone between the two) leaves
//     the counts off by that write: its answer is then an error (503);
//   - beyond MaxLearnedAttributes names, a new name is not learned (its
//     profiles are stored as ever, and a rule naming it is refused unless
//     it is declared); if room is made later, only the profiles written
//     since count, so that its count may fall short.

// MaxLearnedAttributes bounds the names the catalog learns from profiles:
// attribute names come from outside, and every rule's save reads them.
// Declared names are learned beyond it (rules.MaxDeclaredAttributes bounds
// those).
const MaxLearnedAttributes = 1000

// TypeMixed is an attribute's type when profiles carry it with several.
const TypeMixed = "mixed"

// Attributes is the Redis repository of the catalog of attributes.
type Attributes struct {
	rdb redis.UniversalClient
}

// NewAttributes returns the catalog on rdb.
func NewAttributes(rdb redis.UniversalClient) *Attributes { return &Attributes{rdb: rdb} }

// Attribute is one name of the catalog.
type Attribute struct {
	Name string `json:"name"`
	// Type is the declared type, else the type profiles carry it with, or
	// TypeMixed when they carry it with several.
	Type string `json:"type"`
	// Profiles counts the profiles that carry it; Types, by type.
	Profiles int64            `json:"profiles"`
	Types    map[string]int64 `json:"types"`
	Declared bool             `json:"declared"`
	// Description is the declaration's.
	Description string `json:"description,omitempty"`
}

// declaration is a declared attribute as its field in keyAttrDeclared
// holds it.
type declaration struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

// List answers every name of the catalog, by name: those some profile
// carries and those declared.
func (a *Attributes) List(ctx context.Context) ([]Attribute, error) {
	var counts, types, declared *redis.MapStringStringCmd
	if _, err := a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		counts = p.HGetAll(ctx, keyAttrCount)
		types = p.HGetAll(ctx, keyAttrTypes)
		declared = p.HGetAll(ctx, keyAttrDeclared)
		return nil
	}); err != nil {
		return nil, rules.RedisErr("read the attributes", err)
	}
	byName := map[string]*Attribute{}
	at := func(name string) *Attribute {
		if byName[name] == nil {
			byName[name] = &Attribute{Name: name, Types: map[string]int64{}}
		}
		return byName[name]
	}
	for name, v := range counts.Val() {
		if n, _ := strconv.ParseInt(v, 10, 64); n > 0 {
			at(name).Profiles = n
		}
	}
	for field, v := range types.Val() {
		typ, name, ok := strings.Cut(field, ":")
		if n, _ := strconv.ParseInt(v, 10, 64); ok && n > 0 && byName[name] != nil {
			byName[name].Types[typ] = n
		}
	}
	for name, doc := range declared.Val() {
		var d declaration
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return nil, fmt.Errorf("decode the declaration of attribute %q: %w", name, err)
		}
		x := at(name)
		x.Declared, x.Type, x.Description = true, d.Type, d.Description
	}
	out := make([]Attribute, 0, len(byName))
	for _, x := range byName {
		if !x.Declared {
			for typ := range x.Types {
				if x.Type == "" {
					x.Type = typ
				} else {
					x.Type = TypeMixed
				}
			}
		}
		out = append(out, *x)
	}
	slices.SortFunc(out, func(x, y Attribute) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// Known answers the names an audience may name: those some profile
// carries and those declared (rules.KnownAttributes).
func (a *Attributes) Known(ctx context.Context) ([]string, error) {
	var counts *redis.MapStringStringCmd
	var declared *redis.StringSliceCmd
	if _, err := a.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		counts = p.HGetAll(ctx, keyAttrCount)
		declared = p.HKeys(ctx, keyAttrDeclared)
		return nil
	}); err != nil {
		return nil, rules.RedisErr("read the attributes", err)
	}
	out := declared.Val()
	isDeclared := make(map[string]bool, len(out))
	for _, name := range out {
		isDeclared[name] = true
	}
	for name, v := range counts.Val() {
		if n, _ := strconv.ParseInt(v, 10, 64); n > 0 && !isDeclared[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Declare replaces the declared attributes with decls, checked first
// (rules.CheckAttributeDecls). What profiles carry stays counted.
func (a *Attributes) Declare(ctx context.Context, decls []rules.AttributeDecl) error {
	if err := rules.CheckAttributeDecls(decls); err != nil {
		return err
	}
	fields := make([]any, 0, 2*len(decls))
	for _, d := range decls {
		doc, err := json.Marshal(declaration{Type: d.Type, Description: d.Description})
		if err != nil {
			return err
		}
		fields = append(fields, d.Name, doc)
	}
	_, err := a.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, keyAttrDeclared)
		if len(fields) > 0 {
			p.HSet(ctx, keyAttrDeclared, fields...)
		}
		return nil
	})
	if err != nil {
		return rules.RedisErr("declare attributes", err)
	}
	return nil
}

// learnAttributesScript counts what profiles gained and lost.
// KEYS: keyAttrCount, keyAttrTypes, keyAttrDeclared. ARGV: the most names
// learned (MaxLearnedAttributes), n, then n pairs (name, profiles gained,
// negative for lost), then pairs ("<type>:<name>", profiles gained), each
// name of which is among the n. Answers how many of the n names it did
// not learn (the catalog full, the name not declared).
var learnAttributesScript = script("learn_attributes")

// attrDelta is what profile writes change in the catalog.
type attrDelta struct {
	names map[string]int64 // name → profiles gained (negative: lost)
	types map[string]int64 // "<type>:<name>" → profiles gained
}

func newAttrDelta() *attrDelta {
	return &attrDelta{names: map[string]int64{}, types: map[string]int64{}}
}

// attrLines is a profile's attributes as the catalog counts them (the
// profile's "attrs" field): "<type>:<name>", one a line, sorted; names
// the catalog does not keep (rules.LearnableAttribute) left out.
func attrLines(c *rules.Customer) string {
	lines := make([]string, 0, len(c.Attributes))
	for name, v := range c.Attributes {
		if typ := rules.AttributeType(v); typ != "" && rules.LearnableAttribute(name) {
			lines = append(lines, typ+":"+name)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// add counts a profile whose attributes were old and are now cur (each
// as attrLines writes them).
func (d *attrDelta) add(old, cur string) {
	if old == cur {
		return
	}
	oldLines, curLines := splitLines(old), splitLines(cur)
	oldNames, curNames := map[string]bool{}, map[string]bool{}
	for _, l := range oldLines {
		oldNames[lineName(l)] = true
		if !slices.Contains(curLines, l) {
			d.types[l]--
			d.touch(lineName(l))
		}
	}
	for _, l := range curLines {
		curNames[lineName(l)] = true
		if !slices.Contains(oldLines, l) {
			d.types[l]++
			d.touch(lineName(l))
		}
	}
	for name := range oldNames {
		if !curNames[name] {
			d.names[name]--
		}
	}
	for name := range curNames {
		if !oldNames[name] {
			d.names[name]++
		}
	}
}

// touch makes sure a name is among those the script looks at, which it
// must be for each name it counts a type of.
func (d *attrDelta) touch(name string) {
	if _, ok := d.names[name]; !ok {
		d.names[name] = 0
	}
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func lineName(line string) string {
	_, name, _ := strings.Cut(line, ":")
	return name
}

// learn counts d in the catalog.
func (a *Attributes) learn(ctx context.Context, d *attrDelta) error {
	if len(d.names) == 0 {
		return nil
	}
	names := make([]string, 0, len(d.names))
	for name := range d.names {
		names = append(names, name)
	}
	slices.Sort(names)
	args := make([]any, 0, 2+2*len(d.names)+2*len(d.types))
	args = append(args, MaxLearnedAttributes, len(names))
	for _, name := range names {
		args = append(args, name, d.names[name])
	}
	fields := make([]string, 0, len(d.types))
	for f, n := range d.types {
		if n != 0 {
			fields = append(fields, f)
		}
	}
	slices.Sort(fields)
	for _, f := range fields {
		args = append(args, f, d.types[f])
	}
	err := learnAttributesScript.Run(ctx, a.rdb, []string{keyAttrCount, keyAttrTypes, keyAttrDeclared}, args...).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return rules.RedisErr("count attributes", err)
	}
	return nil
}
