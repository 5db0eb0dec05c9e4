"""What the console computes from the other services' answers: graphs, previews, charts."""
