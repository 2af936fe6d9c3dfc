{{- define "riposte.labels" -}}
app.kubernetes.io/name: riposte
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "riposte.selector" -}}
app.kubernetes.io/name: riposte
app.kubernetes.io/component: manager
{{- end }}

{{/* A file from files/, with Riposte's default namespace replaced by the release's. */}}
{{- define "riposte.file" -}}
{{ .root.Files.Get .path | replace "riposte-system" .root.Release.Namespace }}
{{- end }}
