{{/* Name of the chart, overridable. */}}
{{- define "dlaas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name. */}}
{{- define "dlaas.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "dlaas.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "dlaas.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" . "component" "xcache"). */}}
{{- define "dlaas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dlaas.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component. */}}
{{- define "dlaas.labels" -}}
{{ include "dlaas.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: dlaas
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* image reference */}}
{{- define "dlaas.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* Security context of a non-root, read-only container. */}}
{{- define "dlaas.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Egress to the cluster DNS. */}}
{{- define "dlaas.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dnsNamespace }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}

{{/* ipBlock peers from a list of CIDRs. */}}
{{- define "dlaas.cidrPeers" -}}
{{- range . }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding the cache's allowed origins (written by the origin sync). */}}
{{- define "dlaas.xcacheOrigins" -}}
{{- include "dlaas.fullname" . }}-xcache-origins
{{- end }}
