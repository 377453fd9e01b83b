package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix starts the name of every variable that sets a flag.
const envPrefix = "KMSCODEC_"

// envAnnotation is the pflag annotation that lists the environment
// variables a flag reads, first match wins.
const envAnnotation = "kmscodec_env"

// envName is the variable that sets flag name: --max-body-bytes is
// KMSCODEC_MAX_BODY_BYTES.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// bindEnv gives every flag of fs its KMSCODEC_ variable, plus any extra
// variables named in extra (flag name -> variables read after it, such
// as TEMPORAL_ADDRESS), and says so in the flag's help. Call it after the
// flags are defined.
func bindEnv(fs *pflag.FlagSet, extra map[string][]string) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		names := append([]string{envName(f.Name)}, extra[f.Name]...)
		_ = fs.SetAnnotation(f.Name, envAnnotation, names)
		f.Usage += " [$" + strings.Join(names, ", $") + "]"
	})
}

// applyEnv sets each flag of cmd that was not given on the command line
// from the first of its variables that is set and not empty. Lists take
// commas: KMSCODEC_CORS_ORIGIN="https://a.example,https://b.example".
func (a *app) applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		for _, name := range f.Annotations[envAnnotation] {
			// An empty variable counts as unset, as it does for most tools.
			v, ok := a.lookupEnv(name)
			if !ok || v == "" {
				continue
			}
			if setErr := f.Value.Set(v); setErr != nil {
				err = usagef(cmd, "invalid value %q for $%s: %v", v, name, setErr)
				return
			}
			// Changed makes later checks treat the flag as given.
			f.Changed = true
			return
		}
	})
	return err
}

// flagGiven reports whether the user set the named flag, by command line
// or environment (applyEnv marks the latter as changed too).
func flagGiven(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed
}
