{{/* Chart name, overridable. */}}
{{- define "paddock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: fullnameOverride, else the release name (plus "-paddock" unless it
already contains the chart name), at most 52 characters so suffixes fit in 63. */}}
{{- define "paddock.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "paddock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "paddock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paddock
{{- end -}}

{{/* Selector labels of the operator pod (stable across upgrades). */}}
{{- define "paddock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "paddock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "paddock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "paddock.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces of the default RunnerPool, as a JSON list (use with fromJsonArray). Fails when
a listed namespace is outside watchNamespace: the operator would never see that pool. */}}
{{- define "paddock.poolNamespaces" -}}
{{- $out := list -}}
{{- if .Values.defaultPool.namespaces -}}
{{- range .Values.defaultPool.namespaces -}}
{{- if and $.Values.watchNamespace (ne . $.Values.watchNamespace) -}}
{{- fail (printf "defaultPool.namespaces contains %q but the operator only watches watchNamespace %q" . $.Values.watchNamespace) -}}
{{- end -}}
{{- $out = append $out . -}}
{{- end -}}
{{- else if .Values.watchNamespace -}}
{{- $out = list .Values.watchNamespace -}}
{{- else -}}
{{- $out = list .Release.Namespace -}}
{{- end -}}
{{- $out | uniq | toJson -}}
{{- end -}}

{{/* A whole number from 0 to 65535, from (list "valueName" value), printed as digits. Fails,
naming the value, on anything else (the operator's flags take no more; u16 for the reconciles). */}}
{{- define "paddock.count" -}}
{{- $name := index . 0 -}}
{{- $v := index . 1 -}}
{{- if not (or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v)) -}}
{{- fail (printf "%s must be a whole number from 0 to 65535, got %v" $name $v) -}}
{{- end -}}
{{- if or (lt (float64 $v) 0.0) (gt (float64 $v) 65535.0) (ne (float64 $v) (float64 (int64 $v))) -}}
{{- fail (printf "%s must be a whole number from 0 to 65535, got %v" $name $v) -}}
{{- end -}}
{{- int64 $v -}}
{{- end -}}

{{/*
Name of the Secret holding the verdict signing key (verdictKey.existingSecret, or the chart's).
*/}}
{{- define "paddock.verdictKeySecret" -}}
{{- .Values.verdictKey.existingSecret | default (printf "%s-verdict-key" (include "paddock.fullname" .)) -}}
{{- end }}

{{/*
Name of the Secret holding the evidence signing key (evidenceKey.existingSecret, or the chart's).
*/}}
{{- define "paddock.evidenceKeySecret" -}}
{{- .Values.evidenceKey.existingSecret | default (printf "%s-evidence-key" (include "paddock.fullname" .)) -}}
{{- end }}
