"""Token classification (named entities): sentences with character spans of declared entity types; served at
`POST /v1/models/{name}/predict` as entities with character offsets."""
