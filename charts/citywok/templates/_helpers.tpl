{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "citywok.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name for the operator's objects. */}}
{{- define "citywok.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "citywok.operatorName" -}}
{{- printf "%s-operator" (include "citywok.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "citywok.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object of this release carries. */}}
{{- define "citywok.labels" -}}
helm.sh/chart: {{ include "citywok.chart" . }}
app.kubernetes.io/name: {{ include "citywok.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: citywok
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "citywok.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "citywok.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "citywok.operatorLabels" -}}
{{ include "citywok.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "citywok.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "citywok.operatorName" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image every CityWok container runs (operator, and matcher/fetcher unless a FingerprintDB names one). */}}
{{- define "citywok.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The FingerprintDB this release creates (and the matcher Service the operator names after it). */}}
{{- define "citywok.fingerprintDBName" -}}
{{- default (include "citywok.fullname" .) .Values.fingerprintDB.name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Namespaces the operator watches; empty means every namespace. */}}
{{- define "citywok.clusterWide" -}}
{{- if not .Values.operator.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Whether an optional monitoring object is rendered: `true`/`false` from values, or `null` (the
default) to render it only when the cluster serves the Prometheus operator's API.
*/}}
{{- define "citywok.monitoringEnabled" -}}
{{- $flag := index . 0 -}}
{{- $root := index . 1 -}}
{{- if kindIs "bool" $flag -}}
{{- if $flag -}}true{{- end -}}
{{- else if $root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
true
{{- end -}}
{{- end -}}

{{/* Namespace selector for the matcher pods the operator creates. */}}
{{- define "citywok.matcherNamespaceSelector" -}}
{{- if .Values.operator.watchNamespaces }}
matchNames:
  {{- toYaml .Values.operator.watchNamespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end -}}

{{/* An alert's labels block: severity and metrics.prometheusRule.extraLabels. (list root severity) */}}
{{- define "citywok.alertLabels" -}}
{{- $root := index . 0 }}
labels:
  severity: {{ index . 1 }}
  {{- with $root.Values.metrics.prometheusRule.extraLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* An alert's runbook: its section of docs/runbooks.md (GitHub's heading anchor). (list root alert) */}}
{{- define "citywok.runbook" -}}
{{- printf "%s#%s" ((index . 0).Values.metrics.prometheusRule.runbookBaseUrl | trimSuffix "/") (index . 1 | lower) -}}
{{- end -}}
