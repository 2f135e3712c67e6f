{{/*
Names and labels shared by every template of the chart.
*/}}

{{/* The release's full name: the release name, or "<release>-oxcd-operator" when the release
name does not already contain the chart name; 63 characters at most (a DNS label). */}}
{{- define "oxcd-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of the operator pods. The name label is fixed: StoreCluster NetworkPolicies
admit the operator's pods by `app.kubernetes.io/name: oxcd-operator` in its namespace. */}}
{{- define "oxcd-operator.selectorLabels" -}}
app.kubernetes.io/name: oxcd-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "oxcd-operator.labels" -}}
{{ include "oxcd-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: oxcd
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "oxcd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oxcd-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image reference. */}}
{{- define "oxcd-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/* The rules on StoreClusters and their children, granted cluster-wide (ClusterRole) or per
watched namespace (Role): exactly what the operator's reconcilers call. */}}
{{- define "oxcd-operator.workloadRules" -}}
- apiGroups: ["oxcd.io"]
  resources: ["storeclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["oxcd.io"]
  resources: ["storeclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["oxcd.io"]
  resources: ["storeclusters/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end -}}
