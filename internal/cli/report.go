package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/report"
)

func (o *options) reportCommand() *cobra.Command {
	var sf sinkFlags
	var keyFiles []string
	var since time.Duration
	var output string
	live := true
	cmd := &cobra.Command{
		Use:   "report (--dir PATH | --s3-bucket NAME) [--since 720h] [-o table|json|csv|html] [--live=false]",
		Short: "Time to remediate by stage, decisions by person, undone and failed remediations, and drift, from the records",
		Long: `Reads the record trail (verified first: a record that does not verify is
left out, and said so) and the live incidents not yet recorded, and reports on
the incidents detected in the last --since: time to remediate split into its
stages (detected, enriched, decided, remediated, resolved), p50 and p90 overall
and by playbook, severity and source; approvals by policy and by people; each
person's decisions and time to decide; undone and failed remediations; drift
violations by rule and namespace, open by day, and mean time to comply.

-o html writes one self-contained page (charts drawn inline, nothing fetched)
to send around; -o json and -o csv are for other tools. --live=false needs no
cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "", "table", "json", "csv", "html":
			default:
				return fmt.Errorf("-o %s: want table, json, csv or html", output)
			}
			if since <= 0 {
				return fmt.Errorf("--since %s: want a period, such as 720h", since)
			}
			sink, err := sf.sink()
			if err != nil {
				return err
			}
			// An empty sink is no fault to report on: nothing recorded yet,
			// and the live incidents may still say what happened.
			opts := record.VerifyOptions{Cluster: sf.cluster, AllowEmpty: true}
			if opts.Trusted, _, err = trustedKeys(cmd, sink, keyFiles); err != nil {
				return err
			}
			verified, err := record.Verify(cmd.Context(), sink, opts)
			if err != nil {
				return err
			}
			if verified.Records == 0 {
				fmt.Fprintf(o.streams.ErrOut, "warning: %s holds no record: nothing decided yet, or the wrong place (in a bucket, each cluster's records are under its --cluster-name)\n", sink)
			}
			if !verified.OK() {
				fmt.Fprintf(o.streams.ErrOut, "warning: %d records in %s do not verify and are left out (kubectl riposte verify says which)\n", len(verified.Problems), sink)
			}
			var bodies []record.Body
			if live {
				if bodies, err = o.liveBodies(cmd); err != nil {
					return fmt.Errorf("reading live incidents (--live=false reports on the records alone): %w", err)
				}
			}
			for i := len(verified.Bodies) - 1; i >= 0; i-- {
				bodies = append(bodies, verified.Bodies[i].Body)
			}
			now := time.Now()
			rep := report.Build(bodies, now.Add(-since), now)
			switch output {
			case "json":
				enc := json.NewEncoder(o.streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			case "csv":
				return rep.CSV(o.streams.Out)
			case "html":
				return rep.HTML(o.streams.Out)
			}
			return rep.Table(o.streams.Out)
		},
	}
	sf.bind(cmd)
	cmd.Flags().StringArrayVar(&keyFiles, "public-key", nil, "a trusted public key (PEM), repeatable; without it the keys stored beside the records")
	cmd.Flags().DurationVar(&since, "since", 720*time.Hour, "report on incidents detected this long ago or since")
	cmd.Flags().StringVarP(&output, "output", "o", "", "table (the default), json, csv or html")
	cmd.Flags().BoolVar(&live, "live", true, "add the cluster's incidents not yet recorded (needs a kubeconfig)")
	return cmd
}

// liveBodies are the cluster's incidents as records would show them.
func (o *options) liveBodies(cmd *cobra.Command) ([]record.Body, error) {
	c, _, err := o.connect(cmd)
	if err != nil {
		return nil, err
	}
	var incidents riposte.IncidentList
	if err := c.List(cmd.Context(), &incidents); err != nil {
		return nil, err
	}
	var gates riposte.ApprovalGateList
	if err := c.List(cmd.Context(), &gates); err != nil {
		return nil, err
	}
	byIncident := map[[2]string][]riposte.ApprovalGate{}
	for _, g := range gates.Items {
		k := [2]string{g.Namespace, g.Spec.Incident}
		byIncident[k] = append(byIncident[k], g)
	}
	bodies := make([]record.Body, 0, len(incidents.Items))
	for i := range incidents.Items {
		inc := &incidents.Items[i]
		var own []riposte.ApprovalGate
		for _, g := range byIncident[[2]string{inc.Namespace, inc.Name}] {
			// A gate an earlier incident of this name left has another controller.
			if owner := metav1.GetControllerOf(&g); owner == nil || owner.UID == inc.UID {
				own = append(own, g)
			}
		}
		bodies = append(bodies, record.Build(record.Facts{Incident: inc, Milestone: report.LiveMilestone, Gates: own}))
	}
	return bodies, nil
}
