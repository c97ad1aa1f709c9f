{{/* Autoscaling objects shared by the consuming stages (StatefulSets, through their scale subresource).
     Call with (dict "root" $ "component" "filter" "values" .Values.filter "topic" <input topic>). */}}

{{- define "ppg-mi.scaledObject" -}}
{{- $ := .root -}}
{{- $a := .values.autoscaling -}}
{{- include "ppg-mi.checkScaling" (list $ .component $a) -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "ppg-mi.componentName" (list $ .component) }}
  labels:
    {{- include "ppg-mi.componentLabels" (list $ .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: StatefulSet
    name: {{ include "ppg-mi.componentName" (list $ .component) }}
  pollingInterval: {{ $.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $.Values.keda.cooldownPeriod }}
  # never below 1: an idle transactional topic keeps a lag of 1 per partition (commit markers),
  # so KEDA could not tell "idle" from "one record waiting" at zero replicas (kedacore/keda#5675)
  minReplicaCount: {{ $a.minReplicas }}
  # capped at the partition count (checked at render time): more consumers would sit idle
  maxReplicaCount: {{ $a.maxReplicas }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 120
          policies:
            - type: Pods
              value: 1
              periodSeconds: 60
  triggers:
    - type: kafka
      metadata:
        bootstrapServers: {{ include "ppg-mi.bootstrapServers" $ | quote }}
        consumerGroup: {{ .values.groupId | quote }}
        topic: {{ .topic | quote }}
        lagThreshold: {{ $a.lagThreshold | quote }}
        activationLagThreshold: {{ include "ppg-mi.activationLag" (list $ $a) | quote }}
        offsetResetPolicy: earliest
        allowIdleConsumers: "false"
        {{- if eq $.Values.kafka.auth.type "scram-sha-512" }}
        sasl: scram_sha512
        tls: enable
        {{- else if eq $.Values.kafka.auth.type "tls" }}
        tls: enable
        {{- end }}
      {{- if ne $.Values.kafka.auth.type "none" }}
      authenticationRef:
        name: {{ include "ppg-mi.componentName" (list $ .component) }}
      {{- end }}
{{- end -}}

{{- define "ppg-mi.triggerAuthentication" -}}
{{- $ := .root -}}
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: {{ include "ppg-mi.componentName" (list $ .component) }}
  labels:
    {{- include "ppg-mi.componentLabels" (list $ .component) | nindent 4 }}
spec:
  {{- if eq $.Values.kafka.auth.type "scram-sha-512" }}
  env:
    # the user name the container itself uses
    - parameter: username
      name: PPG_MI_KAFKA_SASL_USERNAME
      containerName: {{ .component }}
  {{- end }}
  secretTargetRef:
    - parameter: ca
      name: {{ include "ppg-mi.clusterCaSecret" $ }}
      key: ca.crt
    {{- if eq $.Values.kafka.auth.type "scram-sha-512" }}
    - parameter: password
      name: {{ include "ppg-mi.kafkaUser" (list $ .component) }}
      key: password
    {{- else }}
    - parameter: cert
      name: {{ include "ppg-mi.kafkaUser" (list $ .component) }}
      key: user.crt
    - parameter: key
      name: {{ include "ppg-mi.kafkaUser" (list $ .component) }}
      key: user.key
    {{- end }}
{{- end -}}

{{- define "ppg-mi.hpa" -}}
{{- $ := .root -}}
{{- $a := .values.autoscaling -}}
{{- include "ppg-mi.checkScaling" (list $ .component $a) -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "ppg-mi.componentName" (list $ .component) }}
  labels:
    {{- include "ppg-mi.componentLabels" (list $ .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: StatefulSet
    name: {{ include "ppg-mi.componentName" (list $ .component) }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.cpuUtilization }}
{{- end -}}

{{- define "ppg-mi.pdb" -}}
{{- $ := .root -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ppg-mi.componentName" (list $ .component) }}
  labels:
    {{- include "ppg-mi.componentLabels" (list $ .component) | nindent 4 }}
spec:
  # one pod at a time: a drained consumer's partitions move to the others (cooperative rebalance)
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "ppg-mi.selectorLabels" (list $ .component) | nindent 6 }}
{{- end -}}
