{{/* Names ----------------------------------------------------------------------- */}}
{{- define "ppg-mi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ppg-mi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>"; call with (list $ "filter") */}}
{{- define "ppg-mi.componentName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "ppg-mi.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ppg-mi.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ppg-mi.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------- */}}
{{- define "ppg-mi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ppg-mi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ppg-mi
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (list $ "filter") */}}
{{- define "ppg-mi.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "ppg-mi.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "ppg-mi.componentLabels" -}}
{{ include "ppg-mi.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Image ------------------------------------------------------------------------ */}}
{{- define "ppg-mi.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Kafka ------------------------------------------------------------------------ */}}
{{- define "ppg-mi.kafkaNamespace" -}}
{{- default .Release.Namespace .Values.kafka.namespace -}}
{{- end -}}

{{- define "ppg-mi.bootstrapServers" -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- .Values.kafka.bootstrapServers -}}
{{- else -}}
{{- printf "%s-kafka-bootstrap.%s.svc:%v" .Values.kafka.clusterName (include "ppg-mi.kafkaNamespace" .) (index .Values.kafka.listenerPorts .Values.kafka.auth.type) -}}
{{- end -}}
{{- end -}}

{{- define "ppg-mi.securityProtocol" -}}
{{- $t := .Values.kafka.auth.type -}}
{{- if eq $t "scram-sha-512" -}}SASL_SSL{{- else if eq $t "tls" -}}SSL{{- else -}}PLAINTEXT{{- end -}}
{{- end -}}

{{/* The Secret (key ca.crt, in the release namespace) the pods and KEDA trust the brokers with.
     Strimzi writes <cluster>-cluster-ca-cert only in the Kafka's namespace: with Kafka elsewhere
     the value must name a copy here, or pods would wait forever for a Secret that never comes. */}}
{{- define "ppg-mi.clusterCaSecret" -}}
{{- if .Values.kafka.clusterCaSecret -}}
{{- .Values.kafka.clusterCaSecret -}}
{{- else if ne (include "ppg-mi.kafkaNamespace" .) .Release.Namespace -}}
{{- fail (printf "kafka.clusterCaSecret is required with kafka.auth.type=%s and kafka.namespace=%s: Strimzi writes the cluster CA Secret %s-cluster-ca-cert only in %s, and pods and KEDA read Secrets of %s only; copy its ca.crt into a Secret in %s and name it here (docs/kubernetes.md, section 2)" .Values.kafka.auth.type (include "ppg-mi.kafkaNamespace" .) .Values.kafka.clusterName (include "ppg-mi.kafkaNamespace" .) .Release.Namespace .Release.Namespace) -}}
{{- else -}}
{{- printf "%s-cluster-ca-cert" .Values.kafka.clusterName -}}
{{- end -}}
{{- end -}}

{{/* The KafkaUser (and Strimzi Secret) name of a component, both in the release namespace: (list $ "filter") */}}
{{- define "ppg-mi.kafkaUser" -}}
{{- include "ppg-mi.componentName" . -}}
{{- end -}}

{{/* Transactional id prefix of a role; must match ppg_mi.streaming.clients */}}
{{- define "ppg-mi.transactionalIdPrefix" -}}
{{- printf "ppg-mi-%s-" . -}}
{{- end -}}

{{/* Lag threshold under which KEDA stays inactive: above the idle lag of one commit marker per partition. */}}
{{- define "ppg-mi.activationLag" -}}
{{- $a := index . 1 -}}
{{- $partitions := int (index . 0).Values.topics.partitions -}}
{{- if kindIs "invalid" $a.activationLagThreshold -}}
{{- add $partitions 1 -}}
{{- else -}}
{{- int $a.activationLagThreshold -}}
{{- end -}}
{{- end -}}

{{/* Fails rendering when a component's scaling bounds cannot work: (list $ "filter" .Values.filter.autoscaling) */}}
{{- define "ppg-mi.checkScaling" -}}
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $a := index . 2 -}}
{{- $partitions := int $.Values.topics.partitions -}}
{{- if gt (int $a.maxReplicas) $partitions -}}
{{- fail (printf "%s.autoscaling.maxReplicas=%v exceeds topics.partitions=%v: consumers beyond the partition count sit idle" $name $a.maxReplicas $partitions) -}}
{{- end -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas=%v exceeds maxReplicas=%v" $name $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if le (int (include "ppg-mi.activationLag" (list $ $a))) $partitions -}}
{{- fail (printf "%s.autoscaling.activationLagThreshold must exceed topics.partitions=%v: an idle transactional topic keeps a lag of 1 per partition (kedacore/keda#5675)" $name $partitions) -}}
{{- end -}}
{{- end -}}

{{/* Pod and container security: the restricted Pod Security profile ------------------ */}}
{{- define "ppg-mi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ppg-mi.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod-level settings shared by every pod: (list $ "filter") */}}
{{- define "ppg-mi.podCommon" -}}
{{- $ := index . 0 -}}
serviceAccountName: {{ include "ppg-mi.serviceAccountName" $ }}
automountServiceAccountToken: false
{{- if $.Values.hostNetwork.enabled }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
enableServiceLinks: false
securityContext:
  {{- include "ppg-mi.podSecurityContext" $ | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment: every setting is a PPG_MI_* variable ------------------------------- */}}
{{/* (list $ "filter"); PPG_MI_INSTANCE_ID is the pod name: stable per pod, unique per process,
     so the transactional id ppg-mi-<role>-<pod> fences a restarted pod's zombie. */}}
{{- define "ppg-mi.commonEnv" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
- name: PPG_MI_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PPG_MI_KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "ppg-mi.bootstrapServers" $ | quote }}
- name: PPG_MI_KAFKA_SECURITY_PROTOCOL
  value: {{ include "ppg-mi.securityProtocol" $ | quote }}
{{- if eq $.Values.kafka.auth.type "scram-sha-512" }}
- name: PPG_MI_KAFKA_SASL_MECHANISM
  value: "SCRAM-SHA-512"
- name: PPG_MI_KAFKA_SASL_USERNAME
  value: {{ include "ppg-mi.kafkaUser" (list $ $component) | quote }}
- name: PPG_MI_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ppg-mi.kafkaUser" (list $ $component) }}
      key: password
{{- end }}
{{- if ne $.Values.kafka.auth.type "none" }}
- name: PPG_MI_KAFKA_SSL_CA_LOCATION
  value: /etc/ppg-mi/kafka-ca/ca.crt
{{- end }}
{{- if eq $.Values.kafka.auth.type "tls" }}
- name: PPG_MI_KAFKA_SSL_CERTIFICATE_LOCATION
  value: /etc/ppg-mi/kafka-user/user.crt
- name: PPG_MI_KAFKA_SSL_KEY_LOCATION
  value: /etc/ppg-mi/kafka-user/user.key
{{- end }}
- name: PPG_MI_TOPIC_RAW
  value: {{ $.Values.topics.names.raw | quote }}
- name: PPG_MI_TOPIC_FILTERED
  value: {{ $.Values.topics.names.filtered | quote }}
- name: PPG_MI_TOPIC_PREDICTIONS
  value: {{ $.Values.topics.names.predictions | quote }}
- name: PPG_MI_TOPIC_DLQ
  value: {{ $.Values.topics.names.dlq | quote }}
- name: PPG_MI_TOPIC_PARTITIONS
  value: {{ $.Values.topics.partitions | quote }}
- name: PPG_MI_TOPIC_REPLICATION_FACTOR
  value: {{ $.Values.topics.replicas | quote }}
- name: PPG_MI_METRICS_HOST
  value: {{ include "ppg-mi.bindAddress" $ | quote }}
{{- if $.Values.hostNetwork.enabled }}
- name: PPG_MI_METRICS_PORT
  value: "0"
- name: PPG_MI_METRICS_PORT_FILE
  value: /tmp/ppg-mi-metrics.port
{{- else }}
- name: PPG_MI_METRICS_PORT
  value: {{ $.Values.metrics.port | quote }}
{{- end }}
- name: PPG_MI_LOG_FORMAT
  value: "json"
- name: PPG_MI_LOG_LEVEL
  value: {{ $.Values.config.logLevel | quote }}
- name: PPG_MI_SAMPLING_RATE_HZ
  value: {{ $.Values.config.samplingRateHz | quote }}
- name: PPG_MI_SAMPLES_PER_RECORD
  value: {{ $.Values.config.samplesPerRecord | quote }}
- name: PPG_MI_BATCH_MAX_RECORDS
  value: {{ $.Values.config.batchMaxRecords | quote }}
- name: PPG_MI_BATCH_MAX_WAIT_MS
  value: {{ $.Values.config.batchMaxWaitMs | quote }}
- name: PPG_MI_SHUTDOWN_TIMEOUT_S
  value: {{ $.Values.config.shutdownTimeoutS | quote }}
{{- if ne $component "producer" }}
- name: PPG_MI_LIVENESS_TIMEOUT_S
  value: {{ $.Values.config.livenessTimeoutS | quote }}
{{- end }}
{{- range $k, $v := $.Values.config.extraEnv }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Writable paths on volumes so the root filesystem stays read-only */}}
{{- define "ppg-mi.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/ppg
{{- end -}}

{{- define "ppg-mi.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
- name: home
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{/* Kafka credentials mounted from the Secrets Strimzi creates: (list $ "filter") */}}
{{- define "ppg-mi.kafkaMounts" -}}
{{- $ := index . 0 -}}
{{- if ne $.Values.kafka.auth.type "none" }}
- name: kafka-ca
  mountPath: /etc/ppg-mi/kafka-ca
  readOnly: true
{{- end }}
{{- if eq $.Values.kafka.auth.type "tls" }}
- name: kafka-user
  mountPath: /etc/ppg-mi/kafka-user
  readOnly: true
{{- end }}
{{- end -}}

{{- define "ppg-mi.kafkaVolumes" -}}
{{- $ := index . 0 -}}
{{- if ne $.Values.kafka.auth.type "none" }}
- name: kafka-ca
  secret:
    secretName: {{ include "ppg-mi.clusterCaSecret" $ }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if eq $.Values.kafka.auth.type "tls" }}
- name: kafka-user
  secret:
    secretName: {{ include "ppg-mi.kafkaUser" . }}
    items:
      - key: user.crt
        path: user.crt
      - key: user.key
        path: user.key
{{- end }}
{{- end -}}

{{/* Probes on the one health port of every process --------------------------------- */}}
{{/* Probes: HTTP on the named metrics port; on the host network (hostNetwork.enabled), where
     replicas cannot share a fixed port, `ppg-mi probe` run in the container finds the port the
     process bound in PPG_MI_METRICS_PORT_FILE. Python starts in well under a second; 5 s allows a
     busy node. */}}
{{- define "ppg-mi.probeAction" -}}
{{- $ := index . 0 -}}
{{- $path := index . 1 -}}
{{- if $.Values.hostNetwork.enabled }}
exec:
  command: ["ppg-mi", "probe", {{ $path | quote }}]
timeoutSeconds: 5
{{- else }}
httpGet:
  path: {{ $path }}
  port: metrics
{{- end }}
{{- end -}}

{{- define "ppg-mi.probes" -}}
startupProbe:
  {{- include "ppg-mi.probeAction" (list . "/healthz") | nindent 2 }}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  {{- include "ppg-mi.probeAction" (list . "/healthz") | nindent 2 }}
  periodSeconds: 10
  {{- if not .Values.hostNetwork.enabled }}
  timeoutSeconds: 3
  {{- end }}
  failureThreshold: 3
readinessProbe:
  {{- include "ppg-mi.probeAction" (list . "/readyz") | nindent 2 }}
  periodSeconds: 5
  {{- if not .Values.hostNetwork.enabled }}
  timeoutSeconds: 3
  {{- end }}
  failureThreshold: 2
{{- end -}}

{{/* The metrics container port; none on the host network (the port is chosen by the process) */}}
{{- define "ppg-mi.metricsPorts" -}}
{{- if not .Values.hostNetwork.enabled -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{/* Address the processes bind: every interface of the pod's own network, or only
     hostNetwork.address when the pod shares the node's network */}}
{{- define "ppg-mi.bindAddress" -}}
{{- if .Values.hostNetwork.enabled -}}{{ .Values.hostNetwork.address }}{{- else -}}0.0.0.0{{- end -}}
{{- end -}}

{{- define "ppg-mi.modelsClaim" -}}
{{- if .Values.models.pvc.create -}}
{{- include "ppg-mi.componentName" (list . "models") -}}
{{- else -}}
{{- required "models.pvc.existingClaim is required when models.pvc.create is false" .Values.models.pvc.existingClaim -}}
{{- end -}}
{{- end -}}
