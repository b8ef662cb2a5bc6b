{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "ailab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix: <release>-<chart>, or just <release> when it already contains the chart name. */}}
{{- define "ailab.fullname" -}}
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

{{- define "ailab.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "ailab.labels" -}}
helm.sh/chart: {{ include "ailab.chart" . }}
app.kubernetes.io/name: {{ include "ailab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ailab
{{- end }}

{{/*
Per-service helpers take a dict: (dict "root" $ "name" "<service>" "svc" <values of the service>).
*/}}

{{/* Name of a service's Deployment, Service, ConfigMap, Secret and HPA. */}}
{{- define "ailab.componentFullname" -}}
{{- printf "%s-%s" (include "ailab.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ailab.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ailab.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "ailab.componentLabels" -}}
{{ include "ailab.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Python module of a service: `python -m <module> serve`. */}}
{{- define "ailab.module" -}}
{{- .name | replace "-" "_" }}
{{- end }}

{{/* Image reference of a service: [<registry>/]<repository>:<tag>. */}}
{{- define "ailab.image" -}}
{{- $img := .svc.image | default dict }}
{{- $repository := required (printf "services.%s.image.repository is required" .name) $img.repository }}
{{- $tag := $img.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- if .root.Values.image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) $repository (toString $tag) }}
{{- else }}
{{- printf "%s:%s" $repository (toString $tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret shared by every service (INTERNAL_TOKEN, MONGODB_URI, secretEnv). */}}
{{- define "ailab.sharedSecretName" -}}
{{- include "ailab.fullname" . }}
{{- end }}

{{/* Name of the Secret holding the gateway's JWT signing key. */}}
{{- define "ailab.jwtSecretName" -}}
{{- if .Values.gateway.jwt.existingSecret }}
{{- .Values.gateway.jwt.existingSecret }}
{{- else }}
{{- printf "%s-gateway-jwt" (include "ailab.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ailab.jwtSecretKey" -}}
{{- if .Values.gateway.jwt.existingSecret }}{{ .Values.gateway.jwt.existingSecretKey }}{{ else }}private.pem{{ end }}
{{- end }}

{{/* Name of the chart's shared ConfigMap. */}}
{{- define "ailab.commonConfigName" -}}
{{- printf "%s-common" (include "ailab.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Non-secret environment of every service, as YAML (key: "value"). */}}
{{- define "ailab.commonConfigEnv" -}}
ENVIRONMENT: {{ .Values.environment | quote }}
HOST: "0.0.0.0"
LOG_LEVEL: {{ .Values.logLevel | quote }}
KAFKA_BOOTSTRAP_SERVERS: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
TOPIC_PREFIX: {{ .Values.topicPrefix | default "" | quote }}
{{- range $key, $value := .Values.env }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/* Non-secret environment of one service, as YAML (key: "value"). */}}
{{- define "ailab.serviceConfigEnv" -}}
{{- $root := .root -}}
PORT: {{ toString .svc.port | quote }}
{{- /* every service can call the others' internal APIs (e.g. billing -> usage-meter) */}}
{{- $self := .name }}
{{- range $other, $o := $root.Values.services }}
{{- if and (ne $other $self) $o.enabled }}
{{ printf "%s_URL" ($other | replace "-" "_" | upper) }}: {{ printf "http://%s:%v" (include "ailab.componentFullname" (dict "root" $root "name" $other)) $o.port | quote }}
{{- end }}
{{- end }}
{{- if eq .name "gateway" }}
JWT_PRIVATE_KEY_PATH: "/var/lib/ailab/jwt/private.pem"
{{- with $root.Values.gateway.jwt.issuer }}
JWT_ISSUER: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.jwt.audience }}
JWT_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.oidc.jwksUrl }}
OIDC_JWKS_URL: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.oidc.issuer }}
OIDC_ISSUER: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.oidc.audience }}
OIDC_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.platformAdmin.email }}
PLATFORM_ADMIN_EMAIL: {{ . | quote }}
{{- end }}
{{- with $root.Values.gateway.demoAdmin.email }}
DEMO_ADMIN_EMAIL: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq .name "billing" }}
{{- with $root.Values.billing.stripe.apiBase }}
STRIPE_API_BASE: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := .svc.env }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/* Secret environment of one service held in the chart's per-service Secret, as YAML. May be empty. */}}
{{- define "ailab.serviceSecretEnv" -}}
{{- $root := .root }}
{{- if eq .name "gateway" }}
{{- $stored := (lookup "v1" "Secret" $root.Release.Namespace (include "ailab.componentFullname" .)).data | default dict }}
PLATFORM_ADMIN_PASSWORD: {{ include "ailab.generatedSecret" (dict "value" $root.Values.gateway.platformAdmin.password "stored" $stored "key" "PLATFORM_ADMIN_PASSWORD") | quote }}
DEMO_ADMIN_PASSWORD: {{ include "ailab.generatedSecret" (dict "value" $root.Values.gateway.demoAdmin.password "stored" $stored "key" "DEMO_ADMIN_PASSWORD") | quote }}
{{- end }}
{{- if and (eq .name "billing") (not $root.Values.billing.stripe.existingSecret) }}
{{- with $root.Values.billing.stripe.apiKey }}
STRIPE_API_KEY: {{ . | quote }}
{{- end }}
{{- with $root.Values.billing.stripe.webhookSecret }}
STRIPE_WEBHOOK_SECRET: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := .svc.secretEnv }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}

{{/* "true" when the chart renders the shared Secret (something in it is not from an existing Secret). */}}
{{- define "ailab.hasSharedSecret" -}}
{{- if or (not .Values.internalToken.existingSecret) (not .Values.mongodb.existingSecret) .Values.secretEnv }}true{{ end }}
{{- end }}

{{/*
A chart-managed secret value: the configured value, else the one stored under "key" in the
release's Secret data "stored" (so upgrades keep it), else a new random 32-character string.
*/}}
{{- define "ailab.generatedSecret" -}}
{{- if .value }}
{{- .value }}
{{- else if hasKey .stored .key }}
{{- index .stored .key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}

{{/*
INTERNAL_TOKEN managed by the chart: the configured value, else the one already stored in the
release's Secret (so upgrades keep it), else a new random token.
*/}}
{{- define "ailab.internalToken" -}}
{{- if .Values.internalToken.value }}
{{- .Values.internalToken.value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ailab.sharedSecretName" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "INTERNAL_TOKEN") }}
{{- index $existing.data "INTERNAL_TOKEN" | b64dec }}
{{- else }}
{{- randAlphaNum 48 }}
{{- end }}
{{- end }}
{{- end }}

{{/* JWT signing key managed by the chart: the configured PEM, else the stored one, else a new EC P-256 key (ES256). */}}
{{- define "ailab.jwtPrivateKey" -}}
{{- if .Values.gateway.jwt.privateKey }}
{{- .Values.gateway.jwt.privateKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ailab.jwtSecretName" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "private.pem") }}
{{- index $existing.data "private.pem" | b64dec }}
{{- else }}
{{- genPrivateKey "ecdsa" }}
{{- end }}
{{- end }}
{{- end }}
