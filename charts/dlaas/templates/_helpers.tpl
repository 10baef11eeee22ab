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

{{/* Security context of a non-root, read-only container (Pod Security "restricted", and a read-only root). */}}
{{- define "dlaas.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod security context of a restricted pod running as `uid`:`gid`, with `fsGroup` if given:
(dict "uid" 1000 "gid" 100 "fsGroup" 1000). No fsGroup on pods mounting shared volumes: the kubelet would chown them. */}}
{{- define "dlaas.restrictedPod" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
{{- with .fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A NetworkPolicy peer: pods with `labels` in namespace `namespace`: (dict "namespace" "dlaas" "labels" (dict)). */}}
{{- define "dlaas.podsIn" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .labels | nindent 6 }}
{{- end }}

{{/* Node affinity terms equal to the EOS DaemonSet's node selector: where the EOS mounts exist. */}}
{{- define "dlaas.eosNodeAffinity" -}}
required:
  nodeSelectorTerms:
    - matchExpressions:
        {{- range $key, $value := .Values.eos.nodeSelector }}
        - key: {{ $key }}
          operator: In
          values: [{{ $value | quote }}]
        {{- end }}
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

{{/* Name of the XCache Service (and Deployment). */}}
{{- define "dlaas.xcache" -}}
{{- include "dlaas.fullname" . }}-xcache
{{- end }}

{{/* Name of the registrar's Service, Deployment and NetworkPolicy. */}}
{{- define "dlaas.registrar" -}}
{{- include "dlaas.fullname" . }}-registrar
{{- end }}

{{/* Every eosxd mount of the DaemonSet, as a YAML list: the data instances under eos.hostMountPath (host volume
"eos") and, with eos.scratch.enabled, the scratch area at eos.scratch.hostMountPath (host volume "scratch"). */}}
{{- define "dlaas.eosMounts" -}}
{{- $eos := .Values.eos }}
{{- range $eos.instances }}
- name: {{ .name }}
  mgm: {{ .mgm | quote }}
  remoteMountDir: {{ .remoteMountDir | quote }}
  localMountDir: {{ printf "%s/%s" $eos.hostMountPath .name | quote }}
  volume: eos
  volumePath: {{ $eos.hostMountPath | quote }}
{{- end }}
{{- if $eos.scratch.enabled }}
{{- if or (eq $eos.scratch.hostMountPath $eos.hostMountPath) (hasPrefix (printf "%s/" (trimSuffix "/" $eos.hostMountPath)) $eos.scratch.hostMountPath) }}
{{- fail (printf "eos.scratch.hostMountPath (%s) must lie outside eos.hostMountPath (%s): user pods mount all of that, and would see every user's scratch directory" $eos.scratch.hostMountPath $eos.hostMountPath) }}
{{- end }}
- name: scratch
  mgm: {{ $eos.scratch.mgm | quote }}
  remoteMountDir: {{ $eos.scratch.remoteMountDir | quote }}
  localMountDir: {{ $eos.scratch.hostMountPath | quote }}
  volume: scratch
  volumePath: {{ dir $eos.scratch.hostMountPath | quote }}
{{- end }}
{{- end }}
