{{/* Names and labels scoped to the release (docs/deploy.md). */}}
{{- define "clearway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component: <fullname>-<component> (args: root, component). */}}
{{- define "clearway.name" -}}
{{- printf "%s-%s" (include "clearway.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "clearway.selectorLabels" -}}
app.kubernetes.io/name: clearway
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "clearway.labels" -}}
{{ include "clearway.selectorLabels" . }}
app.kubernetes.io/part-of: clearway
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Secret holding a service's keys and passwords (args: root, name, service values). */}}
{{- define "clearway.secretName" -}}
{{- $svc := index . 2 -}}
{{- default (include "clearway.name" (list (index . 0) (index . 1))) $svc.existingSecret -}}
{{- end -}}

{{/* The in-cluster URL of a service (args: root, name). */}}
{{- define "clearway.url" -}}
{{- $root := index . 0 -}}
{{- printf "http://%s:%v" (include "clearway.name" (list $root (index . 1))) (index $root.Values.services (index . 1)).port -}}
{{- end -}}

{{/* Platform variables every Clearway container gets (CLEARWAY_<FIELD>). */}}
{{- define "clearway.platformEnv" -}}
- { name: CLEARWAY_ENV, value: {{ .Values.env | quote }} }
- { name: CLEARWAY_REGION, value: {{ .Values.region | quote }} }
- { name: CLEARWAY_DEFAULT_REGION, value: {{ .Values.defaultRegion | quote }} }
- { name: CLEARWAY_TENANT_REGIONS, value: {{ .Values.tenantRegions | toJson | quote }} }
- { name: CLEARWAY_OAUTH_ISSUER, value: {{ .Values.oauthIssuer | quote }} }
- { name: CLEARWAY_TOPIC_PREFIX, value: {{ .Values.topicPrefix | quote }} }
- { name: CLEARWAY_LOCAL_DIR, value: /tmp/clearway }
- { name: CLEARWAY_KAFKA_BOOTSTRAP, value: {{ .Values.kafka.bootstrap | quote }} }
- { name: CLEARWAY_KAFKA_SECURITY_PROTOCOL, value: {{ .Values.kafka.securityProtocol | quote }} }
- { name: CLEARWAY_KAFKA_SASL_MECHANISM, value: {{ .Values.kafka.saslMechanism | quote }} }
{{- if .Values.kafka.tlsSecret }}
- { name: CLEARWAY_KAFKA_SSL_CAFILE, value: /etc/clearway/kafka/ca.crt }
{{- if .Values.kafka.clientCertificate }}
- { name: CLEARWAY_KAFKA_SSL_CERTFILE, value: /etc/clearway/kafka/tls.crt }
- { name: CLEARWAY_KAFKA_SSL_KEYFILE, value: /etc/clearway/kafka/tls.key }
{{- end }}
{{- end }}
{{- with .Values.otlpEndpoint }}
- { name: CLEARWAY_OTLP_ENDPOINT, value: {{ . | quote }} }
{{- end }}
{{- end -}}

{{/* Volumes of every Clearway pod: a writable /tmp, the TLS material. */}}
{{- define "clearway.volumes" -}}
- name: tmp
  emptyDir: { sizeLimit: 256Mi }
{{- with .Values.kafka.tlsSecret }}
- name: kafka-tls
  secret: { secretName: {{ . }}, defaultMode: 0440 }
{{- end }}
{{- with .Values.postgres.caSecret }}
- name: postgres-tls
  secret: { secretName: {{ . }}, defaultMode: 0440 }
{{- end }}
{{- end -}}

{{- define "clearway.volumeMounts" -}}
- { name: tmp, mountPath: /tmp }
{{- if .Values.kafka.tlsSecret }}
- { name: kafka-tls, mountPath: /etc/clearway/kafka, readOnly: true }
{{- end }}
{{- if .Values.postgres.caSecret }}
- { name: postgres-tls, mountPath: /etc/clearway/postgres, readOnly: true }
{{- end }}
{{- end -}}

{{/* Pod-level security of every Clearway pod (no API token: no pod calls Kubernetes). */}}
{{- define "clearway.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "clearway.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag | quote -}}
{{- end -}}

{{/* What this chart refuses to render. */}}
{{- define "clearway.checks" -}}
{{- if and (eq .Values.env "production") (eq .Values.database.logins "static") -}}
{{- fail "env=production refuses static database passwords: set database.logins=rotated" -}}
{{- end -}}
{{- end -}}

{{/* The database keys of a service's Secret, JSON (args: root, service values). */}}
{{- define "clearway.dbKeys" -}}
{{- if eq (index . 0).Values.database.logins "rotated" -}}
{{- list "DB_READER_PASSWORD" | toJson -}}
{{- else -}}
{{- default (list "DB_PASSWORD") (index . 1).staticPasswords | toJson -}}
{{- end -}}
{{- end -}}

{{/* Every key of a service's Secret, JSON (args: root, service values); with SSL the
client certificate is the Kafka login, so no KAFKA_PASSWORD. */}}
{{- define "clearway.secretKeys" -}}
{{- $root := index . 0 -}}
{{- $keys := concat (index . 1).secretKeys (include "clearway.dbKeys" . | fromJsonArray) -}}
{{- if eq $root.Values.kafka.securityProtocol "SSL" -}}
{{- $keys = without $keys "KAFKA_PASSWORD" -}}
{{- end -}}
{{- $keys | toJson -}}
{{- end -}}
