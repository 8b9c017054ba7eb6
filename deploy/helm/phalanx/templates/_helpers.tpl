{{/*
Names and labels. `phalanx install --render` (src/phalanx/operator/install.py) builds the same ones;
tests/cluster/test_helm.py holds the two equal.
*/}}

{{- define "phalanx.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{/* <release>-phalanx, or the release alone when it already contains the chart name. */}}
{{- define "phalanx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>; call with (list $ "operator"). */}}
{{- define "phalanx.componentName" -}}
{{- printf "%s-%s" (include "phalanx.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component; call with (list $ "operator"). */}}
{{- define "phalanx.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "phalanx.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every label of a component's objects and pods; call with (list $ "operator"). */}}
{{- define "phalanx.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "phalanx.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "phalanx.name" $ctx }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "phalanx.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* `--namespace <watchNamespace>` for the operator and the router, when one is set. */}}
{{- define "phalanx.watchArgs" -}}
{{- with .Values.watchNamespace }}
- --namespace
- {{ . }}
{{- end }}
{{- end -}}

{{/* Pod and container security of both Deployments: the "restricted" Pod Security Standard. */}}
{{- define "phalanx.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "phalanx.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end -}}
