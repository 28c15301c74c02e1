{{/*
Object names are fixed, not derived from the release name: the admission
policy matches the ServiceAccount system:serviceaccount:wirelace-system:wirelace,
and the Lease Role lives in wirelace-system.
*/}}
{{- define "wirelace.namespace" -}}
{{- if ne .Release.Namespace "wirelace-system" -}}
{{- fail (printf "install Wirelace into the wirelace-system namespace (-n wirelace-system --create-namespace), not %q: its admission policy and RBAC name that namespace" .Release.Namespace) -}}
{{- end -}}
{{- .Release.Namespace -}}
{{- end -}}

{{- define "wirelace.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Selector labels of a component (node, relay, cleanup): never change them,
selectors are immutable. */}}
{{- define "wirelace.selectorLabels" -}}
app.kubernetes.io/name: wirelace
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "node"),
component may be empty. */}}
{{- define "wirelace.labels" -}}
app.kubernetes.io/name: wirelace
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: wirelace
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{/* API server override for clusters without kube-proxy. */}}
{{- define "wirelace.apiserverEnv" -}}
{{- if .Values.k8sServiceHost -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.k8sServiceHost | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.k8sServicePort | default "443" | quote }}
{{- end -}}
{{- end -}}

{{- define "wirelace.nodeNameEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end -}}

{{/* Security context of a container that writes the host's CNI paths or
programs its network; add NET_ADMIN with (dict "caps" (list "NET_ADMIN")). */}}
{{- define "wirelace.hostSecurityContext" -}}
runAsUser: 0
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
  {{- with .caps }}
  add: {{ toJson . }}
  {{- end }}
seLinuxOptions:
  type: spc_t
  level: s0
{{- end -}}

{{/* The host's CNI directories. */}}
{{- define "wirelace.cniMounts" -}}
- name: cni-bin
  mountPath: /opt/cni/bin
- name: cni-conf
  mountPath: /etc/cni/net.d
{{- end -}}
{{- define "wirelace.cniVolumes" -}}
- name: cni-bin
  hostPath:
    path: {{ .Values.cni.binDir }}
    type: DirectoryOrCreate
- name: cni-conf
  hostPath:
    path: {{ .Values.cni.confDir }}
    type: DirectoryOrCreate
{{- end -}}
