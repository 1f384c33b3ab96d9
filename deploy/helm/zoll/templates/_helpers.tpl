{{- define "zoll.labels" -}}
app.kubernetes.io/name: zoll
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
