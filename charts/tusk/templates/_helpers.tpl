{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "tusk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart's unless it already has it. */}}
{{- define "tusk.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tusk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Conventional labels; call with (dict "ctx" $ "component" "repo"). */}}
{{- define "tusk.labels" -}}
helm.sh/chart: {{ include "tusk.chart" .ctx }}
{{ include "tusk.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: tusk
{{- end }}

{{- define "tusk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tusk.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* An image reference; call with (dict "ctx" $ "image" .Values.repo.image). */}}
{{- define "tusk.image" -}}
{{- $tag := default .ctx.Chart.AppVersion (default .ctx.Values.image.tag .image.tag) -}}
{{- $registry := default .ctx.Values.image.registry .image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{- define "tusk.secretName" -}}
{{- default (include "tusk.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "tusk.schedulerServiceAccountName" -}}
{{- default (printf "%s-scheduler" (include "tusk.fullname" .)) .Values.scheduler.serviceAccount.name }}
{{- end }}

{{- define "tusk.workerServiceAccountName" -}}
{{- printf "%s-worker" (include "tusk.fullname" .) }}
{{- end }}

{{/* In-cluster URLs of the services and of the development backing services. */}}
{{- define "tusk.repoUrl" -}}
{{- printf "http://%s-repo:%v" (include "tusk.fullname" .) .Values.repo.service.port }}
{{- end }}

{{- define "tusk.databaseUrl" -}}
{{- if .Values.dev.postgresql.enabled -}}
{{- with .Values.dev.postgresql -}}
{{- printf "postgresql+asyncpg://%s:%s@%s-postgresql:5432/%s" .user .password (include "tusk.fullname" $) .database -}}
{{- end -}}
{{- else -}}
{{- .Values.secrets.databaseUrl -}}
{{- end -}}
{{- end }}

{{- define "tusk.kafkaBootstrap" -}}
{{- if .Values.dev.kafka.enabled -}}
{{- printf "%s-kafka:9092" (include "tusk.fullname" .) -}}
{{- else -}}
{{- .Values.config.kafkaBootstrap -}}
{{- end -}}
{{- end }}

{{- define "tusk.s3EndpointUrl" -}}
{{- if .Values.dev.s3.enabled -}}
{{- printf "http://%s-s3:7070" (include "tusk.fullname" .) -}}
{{- else -}}
{{- .Values.config.s3EndpointUrl -}}
{{- end -}}
{{- end }}

{{/* TUSK_* settings every service gets (CommonSettings). */}}
{{- define "tusk.commonConfig" -}}
TUSK_OBJECT_STORE_URL: {{ .Values.config.objectStoreUrl | quote }}
{{- with (include "tusk.s3EndpointUrl" .) }}
TUSK_S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
TUSK_S3_REGION: {{ .Values.config.s3Region | quote }}
{{- with (include "tusk.kafkaBootstrap" .) }}
TUSK_KAFKA_BOOTSTRAP: {{ . | quote }}
{{- end }}
TUSK_KAFKA_PARTITIONS: {{ .Values.config.kafkaPartitions | quote }}
TUSK_KAFKA_REPLICATION_FACTOR: {{ .Values.config.kafkaReplicationFactor | quote }}
TUSK_MIGRATE_ON_START: {{ .Values.migrateOnStart | quote }}
TUSK_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
TUSK_LOG_JSON: {{ .Values.config.logJson | quote }}
TUSK_DATA_DIR: "/tmp/tusk"
{{- end }}

{{/* The pod-level settings shared by every Deployment. */}}
{{- define "tusk.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
