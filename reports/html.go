package reports

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
)

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":    msText,
	"upper": strings.ToUpper,
	"f2":    func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"join":  strings.Join,
	"disk":  DiskText,
	"secs": func(v *float64) string {
		if v == nil {
			return "never"
		}
		return fmt.Sprintf("%.3fs", *v)
	},
	"loadText": LoadText,
	"opLines":  OperationLines,
	"bytes":    BytesText,
	"network":  NetworkText,
	"pathNote": func(r *Result) string {
		return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(PathNote(r)), "note:"))
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.R.Scenario}}: {{upper .R.Verdict}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e7d32}.fail{background:#c62828}.error,.interrupted,.aborted,.partial{background:#ef6c00}
table{border-collapse:collapse;margin:6px 0 10px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f5f5f5} td.ok{color:#2e7d32;font-weight:600} td.bad{color:#c62828;font-weight:600} td.unk{color:#ef6c00;font-weight:600}
figure.chart{margin:10px 0 18px} figure.chart svg{display:block;width:100%;height:auto;background:#fff}
figcaption{color:#555;font-size:13px} .muted{color:#777} code{background:#f3f3f3;padding:0 3px}
</style></head><body>
<h1>{{.R.Scenario}} <span class="verdict {{.R.Verdict}}">{{upper .R.Verdict}}</span></h1>
<div class="muted">{{.R.Description}}</div>
{{if .R.Reason}}<p><b>Reason:</b> {{.R.Reason}}</p>{{end}}
<table>
<tr><th>seed</th><td>{{.R.Seed}}</td><th>scenario file</th><td>{{.R.File}}</td></tr>
<tr><th>cluster</th><td>{{.R.Cluster.Size}} members, {{.R.Cluster.Provider}}, {{network .R.Cluster}}</td><th>etcd</th><td>{{.R.Cluster.EtcdVersion}}{{if .R.Cluster.EtcdBinary}} ({{.R.Cluster.EtcdBinary}}){{end}}</td></tr>
<tr><th>started</th><td>{{.R.StartedAt.Format "2006-01-02 15:04:05 MST"}}</td><th>ended</th><td>{{.R.EndedAt.Format "2006-01-02 15:04:05 MST"}}</td></tr>
<tr><th>ops</th><td>{{.R.Ops}} ({{.R.FailedOps}} failed)</td><th>throughput</th><td>avg {{printf "%.0f" .R.Throughput.Avg}} ops/s, leader changes {{.R.Leader.Changes}}, prober availability {{printf "%.4f" .R.Prober.Availability}}</td></tr>
<tr><th>load</th><td colspan="3">{{loadText .R.Load}}</td></tr>
<tr><th>paths</th><td colspan="3">client links {{or .R.Cluster.ClientPath "?"}}, peer links {{or .R.Cluster.PeerPath "?"}}{{with pathNote .R}} <b>{{.}}</b>{{end}}</td></tr>
</table>

{{with opLines .R}}<h2>Operations</h2>
<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>Thresholds</h2>
{{if .R.Thresholds}}<table><tr><th></th><th>metric</th><th>condition</th><th>observed</th></tr>
{{range .R.Thresholds}}<tr><td class="{{if eq .State "pass"}}ok{{else if eq .State "unknown"}}unk{{else}}bad{{end}}">{{upper .State}}</td><td>{{.Metric}}</td><td><code>{{.Condition}}</code></td><td>{{.Observed}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No thresholds in this scenario.</p>{{end}}

<h2>Checks</h2>
{{if .R.Checks}}<table><tr><th></th><th>check</th><th>workload</th><th>result</th><th>examples</th></tr>
{{range .R.Checks}}<tr><td class="{{if eq .Status "pass"}}ok{{else}}bad{{end}}">{{upper .Status}}</td><td>{{.Name}}</td><td>{{.Workload}}</td><td>{{.Summary}}<br><span class="muted">{{.Note}}</span></td><td>{{range .Examples}}{{.}}<br>{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No safety checks ran in this scenario.</p>{{end}}
{{if .R.Workloads}}<h2>Workloads</h2>
<table><tr><th>workload</th><th>kind</th><th>numbers</th></tr>
{{range .R.Workloads}}<tr><td>{{.Name}}</td><td>{{.Kind}}</td><td>{{range $k, $v := .Stats}}{{$k}} {{$v}}; {{end}}{{if eq .Kind "kv"}}ops {{.Ops}}, failed {{.Failed}}{{range $op, $l := .Latency}}; {{$op}} p99 {{f2 $l.P99}}ms{{end}}{{end}}</td></tr>
{{end}}</table>{{end}}

{{if .R.Faults}}<h2>Faults, failover and recovery</h2>
{{with .Stats}}<table><tr><th>action</th><th>faults</th><th>measured</th><th>elections</th><th>leader elected (ms, p50 / p99 / max)</th><th>writes restored</th><th>write outage</th><th>caught up</th></tr>
{{range .}}<tr><td>{{.Action}}</td><td>{{.Faults}}</td><td>{{.Measured}}</td><td>{{.Elections}}</td><td>{{.LeaderElected.Text}}</td><td>{{.WriteRestored.Text}}</td><td>{{.OutageWrite.Text}}</td><td>{{.CaughtUp.Text}}</td></tr>
{{end}}</table>{{end}}
{{if .Many}}<details><summary>every fault, failover and recovery ({{len .R.Faults}} faults)</summary>{{end}}
<table><tr><th>#</th><th>action</th><th>target</th><th>members</th><th>injected</th><th>healed</th><th>cost</th><th>write outage</th><th>slowest probe</th><th>network</th><th>bytes across its links</th><th>error</th></tr>
{{range .R.Faults}}<tr><td>{{.Index}}</td><td>{{.Action}}</td><td>{{.Target}}</td><td>{{join .Members ", "}}{{if .WasLeader}} (leader){{end}}</td><td>{{printf "%.3fs" .AtS}}</td><td>{{secs .HealedAtS}}</td><td>{{if .Election}}election{{else if .OutageWriteMs}}no election{{end}}</td><td>{{if .OutageWriteMs}}{{ms .OutageWriteMs}}{{end}}</td><td>{{if .SlowestProbeMs}}{{ms .SlowestProbeMs}}{{end}}</td><td>{{.Network}}{{if .Links}} ({{len .Links}} links){{end}}</td><td>{{if .LinkBytes}}{{$.LinkBytes .}}{{end}}</td><td>{{.Error}}{{range .Disk}}<div>disk {{.Member}}: {{disk .}}</div>{{end}}</td></tr>
{{end}}</table>
{{if .R.Failovers}}<table><tr><th>fault</th><th>old leader</th><th>leader elected</th><th>by</th><th>writes restored</th><th>new leader</th></tr>
{{range .R.Failovers}}<tr><td>#{{.Fault}} {{.Action}}</td><td>{{.Member}} (term {{.OldTerm}})</td><td>{{ms .LeaderElectedMs}}</td><td>{{.LeaderElectedBy}}</td><td>{{ms .WriteRestoredMs}}</td><td>{{.NewLeader}}{{if .NewTerm}} (term {{.NewTerm}}){{end}}{{if .Note}}; {{.Note}}{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .R.Recoveries}}<table><tr><th>fault</th><th>member</th><th>caught up</th><th>linearizable read</th></tr>
{{range .R.Recoveries}}<tr><td>#{{.Fault}}</td><td>{{.Member}}</td><td>{{ms .CaughtUpMs}}</td><td>{{ms .ReadRestoredMs}}</td></tr>
{{end}}</table>{{end}}{{if .Many}}</details>{{end}}{{end}}

{{if .R.MemberHealth}}<h2>Members over the run</h2>
<p class="muted">Scraped from each member's /metrics into members.jsonl; growth per hour by least squares over the scrapes after the warm-up (one intercept per process lifetime).</p>
<table><tr><th>member</th><th>RSS (growth)</th><th>open fds (growth)</th><th>db size (growth)</th><th>WAL fsync p99 max</th><th>backend commit p99 max</th><th>scrapes</th></tr>
{{range .R.MemberHealth}}<tr><td>{{.Member}}</td><td>{{bytes .LastRSSBytes}} ({{.GrowthText .RSSGrowthPerH true}})</td><td>{{printf "%.0f" .MaxOpenFDs}} ({{.GrowthText .FDsGrowthPerH false}})</td><td>{{bytes .MaxDBSize}} ({{.GrowthText .DBSizeGrowthPerH true}})</td><td>{{printf "%.1f" .MaxWALFsyncMs}}ms</td><td>{{printf "%.1f" .MaxCommitMs}}ms</td><td>{{.Scrapes}} ({{.Failed}} failed, {{.Restarts}} restarts)</td></tr>
{{end}}</table>{{end}}

<h2>Charts</h2>
<p class="muted">Shaded: a fault from injection to heal. Dashed purple: a leader change. Latency is measured from each op's due time (open loop), so stalls show.</p>
{{range .Charts}}<figure class="chart" id="{{.ID}}">{{.SVG}}<figcaption>{{.Title}}</figcaption></figure>
{{end}}{{if .Missing}}<p class="muted">Not drawn (no data): {{join .Missing "; "}}</p>{{end}}

<h2>Latency (ms, from the due time, successful ops, warm-up excluded)</h2>
{{with pathNote .R}}<p><b>{{.}}</b></p>{{end}}
<table><tr><th>op</th><th>count</th><th>failed (left out)</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range $op, $s := .R.Latency}}<tr><td>{{if eq $op "failed"}}(failed ops){{else}}{{$op}}{{end}}</td><td>{{$s.Count}}</td><td>{{if ne $op "failed"}}{{$s.Failed}}{{end}}</td><td>{{f2 $s.P50}}</td><td>{{f2 $s.P90}}</td><td>{{f2 $s.P99}}</td><td>{{f2 $s.P999}}</td><td>{{f2 $s.Max}}</td></tr>
{{end}}</table>
<table><tr><th>phase (ops by due time)</th><th>window</th><th>count</th><th>failed (left out)</th><th>p50</th><th>p99</th><th>max</th></tr>
{{range .R.Phases}}{{$a := index .Latency "all"}}<tr><td>{{.Name}}</td><td>{{printf "%.1fs-%.1fs" .StartS .EndS}}</td><td>{{$a.Count}}</td><td>{{$a.Failed}}</td><td>{{f2 $a.P50}}</td><td>{{f2 $a.P99}}</td><td>{{f2 $a.Max}}</td></tr>
{{end}}</table>

<h2>Errors and retries</h2>
<table><tr><th>failed ops by class</th><td>{{range $k, $v := .R.Errors}}{{$k}} {{$v}}; {{else}}none{{end}}</td></tr>
<tr><th>failed attempts by class</th><td>{{range $k, $v := .R.Attempts}}{{$k}} {{$v}}; {{else}}none{{end}}</td></tr>
{{range $op, $s := .R.Retries}}<tr><th>retries.{{$op}}</th><td>{{printf "%.4f" $s.PerOp}} attempts/op, {{$s.RetriedOps}} ops retried, max {{$s.MaxAttempts}} attempts, {{printf "%.0f" $s.RetryTimeMs}} ms backing off</td></tr>
{{end}}</table>

<h2>Files</h2>
<p>{{range .Members}}<a href="members/{{.}}/etcd.log">{{.}} log</a> · {{end}}<a href="result.json">result.json</a> · <a href="events.jsonl">events.jsonl</a> · <a href="ledger.jsonl">ledger.jsonl</a> · <a href="latency.hlog">latency.hlog</a> · <a href="scenario.yaml">scenario.yaml</a> · <a href="junit.xml">junit.xml</a> · <a href="summary.md">summary.md</a></p>
<p class="muted">Made by etcd-chaos; self-contained: nothing is fetched.</p>
</body></html>
`))

type htmlData struct {
	R       *Result
	Charts  []Chart
	Missing []string
	Members []string
	// Stats sums the faults up by action when there are several; Many folds the per-fault tables.
	Stats []FaultStat
	Many  bool
}

// LinkBytes sums what crossed a fault's links while it held.
func (htmlData) LinkBytes(f FaultRecord) string {
	var n int64
	for _, v := range f.LinkBytes {
		n += v
	}
	return fmt.Sprint(n)
}

// WriteHTML writes report.html for a run folder: self-contained, with the charts inline as SVG.
func WriteHTML(w io.Writer, rd *RunDir) error {
	charts, missing := rd.Charts()
	var buf bytes.Buffer
	data := htmlData{R: rd.Result, Charts: charts, Missing: missing, Members: rd.Members, Many: len(rd.Result.Faults) > ManyFaults}
	if len(rd.Result.Faults) > 1 {
		data.Stats = FaultStatsOf(rd.Result)
	}
	if err := reportTmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("rendering report.html: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// WriteReports rebuilds summary.txt, summary.md, junit.xml and report.html in a run folder from its
// raw files (result.json, events.jsonl, latency.hlog, histograms.hlog).
func WriteReports(dir string) error {
	rd, err := ReadRunDir(dir)
	if err != nil {
		return err
	}
	return writeReports(dir, rd)
}

// WriteReportsOf writes the reports of a run folder for a result given (a partial one).
func WriteReportsOf(dir string, res *Result) error {
	rd, err := ReadRunDirOf(dir, res)
	if err != nil {
		return err
	}
	return writeReports(dir, rd)
}

func writeReports(dir string, rd *RunDir) error {
	var errs []error
	for _, out := range []struct {
		name  string
		write func(io.Writer) error
	}{
		{"summary.txt", func(w io.Writer) error { return WriteText(w, rd.Result) }},
		{"summary.md", func(w io.Writer) error { return WriteMarkdown(w, rd.Result) }},
		{"junit.xml", func(w io.Writer) error { return WriteJUnit(w, rd.Result) }},
		{"report.html", func(w io.Writer) error { return WriteHTML(w, rd) }},
	} {
		var b bytes.Buffer
		if err := out.write(&b); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", out.name, err))
			continue
		}
		tmp := filepath.Join(dir, out.name+".tmp")
		if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(tmp, filepath.Join(dir, out.name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
