{{/*
One tusk service: its ConfigMap, Deployment and Service.
Call with (dict "ctx" $ "component" "repo" "module" "tusk_repo" "live" "/healthz"
               "ready" "/readyz" "startup" "/healthz" "config" (dict ...)).
*/}}
{{- define "tusk.serviceConfigData" -}}
{{- $v := index .ctx.Values .component -}}
{{ include "tusk.commonConfig" .ctx }}
{{- range $key, $value := .config }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- range $key, $value := $v.env }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "tusk.service" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $fullname := include "tusk.fullname" $ctx -}}
{{- $labels := dict "ctx" $ctx "component" .component -}}
{{- $configData := include "tusk.serviceConfigData" . -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $fullname }}-{{ .component }}
  labels:
    {{- include "tusk.labels" $labels | nindent 4 }}
data:
  {{- $configData | nindent 2 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ .component }}
  labels:
    {{- include "tusk.labels" $labels | nindent 4 }}
spec:
  {{- if not (and (eq .component "inference") $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "tusk.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tusk.labels" $labels | nindent 8 }}
      annotations:
        # Everything the pod reads at start: its ConfigMap (common settings included) and the
        # Secret (or the name of an existing one), so `helm upgrade` restarts what changed.
        checksum/config: {{ $configData | sha256sum }}
        checksum/secret: {{ printf "%s%s" (include (print $ctx.Template.BasePath "/secret.yaml") $ctx) ($ctx.Values.secrets.existingSecret | default "") | sha256sum }}
        {{- with $ctx.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- if eq .component "scheduler" }}
      serviceAccountName: {{ include "tusk.schedulerServiceAccountName" $ctx }}
      automountServiceAccountToken: {{ eq $v.runner "kubernetes" }}
      {{- else }}
      automountServiceAccountToken: false
      {{- end }}
      enableServiceLinks: false
      {{- include "tusk.podCommon" $ctx | trim | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "tusk.image" (dict "ctx" $ctx "image" $v.image) | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          command: ["uvicorn", "--factory", "{{ .module }}.app:create_app", "--host", "0.0.0.0", "--port", "{{ $v.port }}", "--no-access-log"]
          ports:
            - name: http
              containerPort: {{ $v.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $fullname }}-{{ .component }}
            - secretRef:
                name: {{ include "tusk.secretName" $ctx }}
          startupProbe:
            httpGet: {path: {{ .startup }}, port: http}
            {{- toYaml $ctx.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet: {path: {{ .live }}, port: http}
            {{- toYaml $ctx.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet: {path: {{ .ready }}, port: http}
            {{- toYaml $ctx.Values.probes.readiness | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-{{ .component }}
  labels:
    {{- include "tusk.labels" $labels | nindent 4 }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "tusk.selectorLabels" $labels | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
{{- end }}
