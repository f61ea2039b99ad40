package rules

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// An audience is a marketer's code that every replica runs on every ping
// near a store, so it is written in a small language: comparisons, boolean
// logic, `in`, string prefix, suffix and contains, arithmetic, a few
// helpers, and quantifiers (all, any, none, one, count) over the lists of
// the profile, the store and the ping's context, nested at most
// MaxQuantifierDepth deep. compileAudience refuses everything else when a
// rule is saved or loaded, naming the construct; and every evaluation runs
// under a budget of steps and memory, so that an expression that got past
// the check, or a profile written before its lists were bounded, fails
// closed (ErrAudienceBudget) instead of stalling or crashing a replica.

// Audience limits.
const (
	// MaxAudienceBytes bounds an audience's source.
	MaxAudienceBytes = 2000
	// MaxAudienceNodes bounds its syntax tree.
	MaxAudienceNodes = 300
	// MaxQuantifierDepth is how deep all, any, none, one and count nest.
	MaxQuantifierDepth = 2
	// AudienceSteps is how many steps one evaluation may take: a loop
	// takes one, and one more for each item of its list, so a quantifier
	// inside another, over two lists of MaxListLen items, takes 10,201.
	AudienceSteps = 25_000
	// AudienceMemory bounds what one evaluation may allocate in expr's own
	// accounting (items of lists it builds, ranges, sorts).
	AudienceMemory = 10_000
	// AudienceLoopBytes bounds the bytes of strings and lists predicates
	// may produce in one evaluation.
	AudienceLoopBytes = 64 << 10
)

// ErrAudienceBudget is an evaluation stopped because it went over its
// budget of steps or memory: the rule does not fire.
var ErrAudienceBudget = errors.New("the audience went over its budget of steps or memory")

// quantifiers are the builtins that loop, each over a list of the profile,
// the store or the context.
var quantifiers = map[string]bool{"all": true, "any": true, "none": true, "one": true, "count": true}

// audienceHelpers are the other builtins an audience may call: none
// loops over more than its arguments, none builds more than its input.
var audienceHelpers = map[string]bool{
	"len": true, "lower": true, "upper": true, "trim": true, "trimPrefix": true, "trimSuffix": true,
	"hasPrefix": true, "hasSuffix": true, "abs": true, "ceil": true, "floor": true, "round": true,
	"int": true, "float": true, "string": true, "max": true, "min": true,
	"now": true, "date": true, "duration": true,
}

// audienceOperators are the binary operators an audience may use.
var audienceOperators = map[string]bool{
	"==": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true,
	"and": true, "or": true, "&&": true, "||": true, "in": true, "??": true,
	"contains": true, "startsWith": true, "endsWith": true,
	"+": true, "-": true, "*": true, "/": true, "%": true, "**": true, "^": true,
}

// listRoots are where a quantifier's list may come from.
var listRoots = map[string]bool{"customer": true, "store": true, "context": true}

// Names of what the guard adds to a compiled audience.
const (
	boundFunc = "__nc_bound"
	stepFunc  = "__nc_step"
	envName   = "$env"
)

// audienceConfig is the compiler's configuration for an audience: the
// environment, a boolean result, the node limit and the guard's
// functions, every builtin still enabled (so that the parse names a
// refused one as what it is, not as an unknown name).
func audienceConfig() *conf.Config {
	cfg := conf.CreateNew()
	for _, opt := range []expr.Option{expr.Env(AudienceEnv{}), expr.AsBool(), expr.MaxNodes(MaxAudienceNodes),
		guardFunction(boundFunc, bound), guardFunction(stepFunc, step)} {
		opt(cfg)
	}
	return cfg
}

// compileAudience compiles an audience, or answers every fault: the
// constructs outside the subset, else the type checker's error.
func compileAudience(src string) (*vm.Program, []string) {
	if len(src) > MaxAudienceBytes {
		return nil, []string{fmt.Sprintf("an audience is at most %d bytes", MaxAudienceBytes)}
	}
	cfg := audienceConfig()
	tree, err := parser.ParseWithConfig(src, cfg)
	if err != nil {
		return nil, []string{exprError(err)}
	}
	var w subsetWalk
	w.walk(tree.Node, 0, false)
	if len(w.faults) > 0 {
		return nil, w.faults
	}
	// The builtins outside the subset are disabled too, so that the
	// checker would refuse one even if the walk had missed it.
	for _, b := range builtin.Builtins {
		if !quantifiers[b.Name] && !audienceHelpers[b.Name] {
			cfg.Disabled[b.Name] = true
			delete(cfg.Builtins, b.Name)
		}
	}
	// The marketer's faults are typed against what they wrote, before
	// the guard's calls wrap it.
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, []string{exprError(err)}
	}
	prog, err := guardedProgram(tree, cfg)
	if err != nil {
		return nil, []string{exprError(err)}
	}
	return prog, nil
}

// guardedProgram patches a parsed audience with the run-time guard (see
// guard), whose calls count against the evaluation's budget, and compiles
// it, as expr.Compile would.
func guardedProgram(tree *parser.Tree, cfg *conf.Config) (*vm.Program, error) {
	ast.Walk(&tree.Node, guard{})
	if _, err := checker.Check(tree, cfg); err != nil {
		return nil, err
	}
	if cfg.Optimize {
		if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				return nil, fe.Bind(tree.Source)
			}
			return nil, err
		}
	}
	return compiler.Compile(tree, cfg)
}

// guardFunction declares one of the guard's functions, typed as its
// second argument, so that the checker and the compiler see through the
// call (a list of strings stays one, and # a string).
func guardFunction(name string, fn func(args ...any) (any, error)) expr.Option {
	return func(c *conf.Config) {
		c.Functions[name] = &builtin.Function{Name: name, Func: fn, Validate: func(args []reflect.Type) (reflect.Type, error) {
			if len(args) != 2 {
				return nil, fmt.Errorf("%s takes 2 arguments", name)
			}
			return args[1], nil
		}}
	}
}

func exprError(err error) string {
	return exprTypeNames.Replace(strings.TrimSpace(err.Error()))
}

// loops are the builtins that loop over their first argument (expr's
// predicate builtins), and producers those whose predicates make values
// (rather than answer yes or no), which could grow from one item to the
// next.
var (
	loops = map[string]bool{"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
		"count": true, "sum": true, "find": true, "findIndex": true, "findLast": true, "findLastIndex": true,
		"groupBy": true, "sortBy": true, "reduce": true}
	producers = map[string]bool{"map": true, "reduce": true, "sum": true, "sortBy": true, "groupBy": true}
)

// guard bounds loops. A looping builtin's list passes through
// boundFunc($env, list), which charges the evaluation one step per item
// before the loop starts; inside a loop, so do the list on the right of
// `in` (unless it is written out) and a list of the data a helper is
// given (len(customer.segments)); and the predicate of a builtin that
// makes values passes through stepFunc($env, value), which charges a step
// and the value's size every time. A call costs an allocation, so the
// subset's quantifiers pay once per loop, not once per item.
type guard struct{}

func (guard) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.BuiltinNode)
	if !ok || !loops[n.Name] || len(n.Arguments) == 0 {
		return
	}
	n.Arguments[0] = guardCall(boundFunc, n.Arguments[0])
	if len(n.Arguments) < 2 {
		return
	}
	p, ok := n.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return
	}
	ast.Walk(&p.Node, inGuard{})
	if producers[n.Name] {
		p.Node = guardCall(stepFunc, p.Node)
	}
}

// inGuard charges, inside a loop, the lists that `in` and the helpers
// look through. A list already charged is a call by now, not a path, so
// the walk of an outer loop leaves it be.
type inGuard struct{}

func (inGuard) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		if n.Operator != "in" {
			return
		}
		switch r := n.Right.(type) {
		case *ast.ArrayNode: // written out: expr makes it a set
			return
		case *ast.CallNode:
			if id, ok := r.Callee.(*ast.IdentifierNode); ok && id.Value == boundFunc {
				return // charged already, by an inner loop's walk
			}
		}
		n.Right = guardCall(boundFunc, n.Right)
	case *ast.BuiltinNode:
		if loops[n.Name] {
			return // the guard charges its list
		}
		for i, a := range n.Arguments {
			if isListPath(a) {
				n.Arguments[i] = guardCall(boundFunc, a)
			}
		}
	}
}

func guardCall(fn string, arg ast.Node) ast.Node {
	call := &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: fn},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: envName}, arg},
	}
	call.SetLocation(arg.Location())
	return call
}

// budget is what one evaluation has left. It lives in the AudienceEnv the
// evaluation runs on (the guard's calls reach it as $env), so that an
// evaluation allocates nothing for it and concurrent ones share nothing.
type budget struct {
	steps, bytes int
}

func budgetOf(v any) (*budget, error) {
	env, ok := v.(*AudienceEnv)
	if !ok {
		return nil, ErrAudienceBudget // run without a budget: refuse to loop
	}
	return &env.budget, nil
}

// bound charges a step for a loop and one for each item of its list (for
// a string a helper is given in a loop, one for each 64 bytes).
func bound(args ...any) (any, error) {
	b, err := budgetOf(args[0])
	if err != nil {
		return nil, err
	}
	n := 0
	switch v := args[1].(type) {
	case nil:
	case []string:
		n = len(v)
	case []any:
		n = len(v)
	case string:
		n = len(v) / 64
	default:
		switch rv := reflect.ValueOf(v); rv.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			n = rv.Len()
		case reflect.String:
			n = rv.Len() / 64
		}
	}
	b.steps -= n + 1
	if b.steps < 0 {
		return nil, ErrAudienceBudget
	}
	return args[1], nil
}

// step charges a step and the size of what a predicate made.
func step(args ...any) (any, error) {
	b, err := budgetOf(args[0])
	if err != nil {
		return nil, err
	}
	b.steps--
	switch v := args[1].(type) {
	case string:
		b.bytes -= len(v)
	case []any:
		b.bytes -= 16 * len(v)
	case []string:
		b.bytes -= 16 * len(v)
	}
	if b.steps < 0 || b.bytes < 0 {
		return nil, ErrAudienceBudget
	}
	return args[1], nil
}

// subsetWalk collects the constructs of an audience outside the subset.
type subsetWalk struct {
	faults []string
	seen   map[string]bool
}

func (w *subsetWalk) refuse(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if w.seen[msg] {
		return
	}
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	w.seen[msg] = true
	w.faults = append(w.faults, msg)
}

// walk checks a node; depth counts the quantifiers around it, inLoop
// whether it is evaluated once per list item.
func (w *subsetWalk) walk(node ast.Node, depth int, inLoop bool) {
	switch n := node.(type) {
	case nil, *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode, *ast.StringNode:
	case *ast.IdentifierNode:
		if strings.HasPrefix(n.Value, "$") {
			w.refuse("%s is not allowed in an audience", n.Value)
		}
	case *ast.PointerNode:
		if n.Name != "" && n.Name != "index" {
			w.refuse("#%s is not allowed in an audience", n.Name)
		}
	case *ast.UnaryNode:
		w.walk(n.Node, depth, inLoop)
	case *ast.BinaryNode:
		switch {
		case n.Operator == "..":
			w.refuse("ranges (a..b) are not allowed in an audience")
		case n.Operator == "matches":
			w.refuse("matches (regular expressions) is not allowed in an audience: use startsWith, endsWith or contains")
		case !audienceOperators[n.Operator]:
			w.refuse("the operator %s is not allowed in an audience", n.Operator)
		case n.Operator == "+" && inLoop:
			w.refuse("+ is not allowed inside all, any, none, one or count: it would build strings in a loop")
		}
		w.walk(n.Left, depth, inLoop)
		w.walk(n.Right, depth, inLoop)
	case *ast.ChainNode:
		w.walk(n.Node, depth, inLoop)
	case *ast.MemberNode:
		w.walk(n.Node, depth, inLoop)
		w.walk(n.Property, depth, inLoop)
	case *ast.ConditionalNode:
		w.walk(n.Cond, depth, inLoop)
		w.walk(n.Exp1, depth, inLoop)
		w.walk(n.Exp2, depth, inLoop)
	case *ast.ArrayNode:
		for _, x := range n.Nodes {
			w.walk(x, depth, inLoop)
		}
	case *ast.BuiltinNode:
		w.builtin(n, depth, inLoop)
	case *ast.CallNode:
		w.refuse("calling %s is not allowed in an audience: only the helpers (%s) and the quantifiers (all, any, none, one, count)", callee(n.Callee), helperNames())
	case *ast.SliceNode:
		w.refuse("slices (a[i:j]) are not allowed in an audience")
	case *ast.VariableDeclaratorNode:
		w.refuse("let is not allowed in an audience")
	case *ast.SequenceNode:
		w.refuse("sequences (a; b) are not allowed in an audience")
	case *ast.MapNode:
		w.refuse("map literals ({...}) are not allowed in an audience")
	case *ast.BytesNode:
		w.refuse("bytes literals are not allowed in an audience")
	default:
		w.refuse("%s is not allowed in an audience", strings.TrimPrefix(fmt.Sprintf("%T", node), "*ast."))
	}
}

func (w *subsetWalk) builtin(n *ast.BuiltinNode, depth int, inLoop bool) {
	switch {
	case quantifiers[n.Name]:
		if depth >= MaxQuantifierDepth {
			w.refuse("all, any, none, one and count nest at most %d deep in an audience", MaxQuantifierDepth)
		}
		if len(n.Arguments) > 0 && !isListPath(n.Arguments[0]) {
			w.refuse("%s goes only over a list of the customer, the store or the context, such as customer.segments", n.Name)
		}
		for i, a := range n.Arguments {
			if p, ok := a.(*ast.PredicateNode); ok && i > 0 {
				w.walk(p.Node, depth+1, true)
				continue
			}
			w.walk(a, depth, inLoop)
		}
		return
	case !audienceHelpers[n.Name]:
		w.refuse("%s is not allowed in an audience", n.Name)
	case n.Name == "date" && len(n.Arguments) > 2:
		w.refuse("date takes a date and at most a layout in an audience, not a time zone")
	case n.Name == "now" && len(n.Arguments) > 0:
		w.refuse("now takes no argument in an audience")
	}
	for _, a := range n.Arguments {
		if p, ok := a.(*ast.PredicateNode); ok {
			w.walk(p.Node, depth+1, true)
			continue
		}
		w.walk(a, depth, inLoop)
	}
}

// isListPath reports whether a node is a plain path into the customer,
// the store or the context (customer.segments, customer.attributes.tags).
func isListPath(n ast.Node) bool {
	for {
		switch x := n.(type) {
		case *ast.ChainNode:
			n = x.Node
		case *ast.MemberNode:
			if _, ok := x.Property.(*ast.StringNode); !ok {
				return false
			}
			n = x.Node
		case *ast.IdentifierNode:
			return listRoots[x.Value]
		default:
			return false
		}
	}
}

func callee(n ast.Node) string {
	switch x := n.(type) {
	case *ast.IdentifierNode:
		return x.Value + "()"
	case *ast.MemberNode:
		if s, ok := x.Property.(*ast.StringNode); ok {
			return "the method " + s.Value + "()"
		}
	}
	return "a function"
}

func helperNames() string {
	names := make([]string, 0, len(audienceHelpers))
	for k := range audienceHelpers {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Match evaluates the audience for env under the evaluation's budget; a
// rule without one matches everyone. An expression that fails at run time
// in an ordinary way (a missing attribute compared with a number, say)
// does not match. One that goes over its budget (ErrAudienceBudget), or
// panics outside the machine, answers an error: the rule must not fire,
// and the caller counts why. env is used by one evaluation at a time.
func (c *Compiled) Match(env *AudienceEnv) (ok bool, err error) {
	if c.audience == nil {
		return true, nil
	}
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("audience of rule %s: %v", c.Rule.ID, r)
		}
	}()
	env.budget = budget{steps: AudienceSteps, bytes: AudienceLoopBytes}
	machine := vms.Get().(*vm.VM)
	machine.MemoryBudget = AudienceMemory
	out, err := machine.Run(c.audience, env)
	vms.Put(machine)
	if err != nil {
		if errors.Is(err, ErrAudienceBudget) || strings.Contains(err.Error(), "memory budget exceeded") {
			return false, fmt.Errorf("audience of rule %s: %w", c.Rule.ID, ErrAudienceBudget)
		}
		// expr's machine turns every panic of a run into an error, and
		// its helpers fail as Go does on data they do not expect
		// (date(nil) is a failed type assertion): no match.
		return false, nil
	}
	b, _ := out.(bool)
	return b, nil
}

// Matches is Match, with a failed evaluation as no match.
func (c *Compiled) Matches(env *AudienceEnv) bool {
	ok, err := c.Match(env)
	return ok && err == nil
}
