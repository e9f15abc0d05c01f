metadata name = 'App identity'
metadata description = 'User-assigned managed identity that the function app runs as, so its principal exists before the app and survives app re-creation.'

@description('Required. Name of the user-assigned managed identity.')
param name string

@description('Required. Azure region of the identity.')
param location string

@description('Required. Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Required. Resource id of the identity, for the site identity block and the deployment storage.')
output resourceId string = identity.id

@description('Required. Object (principal) id of the identity, which receives the role assignments and the Graph app role.')
output principalId string = identity.properties.principalId

@description('Required. Client (application) id of the identity, which the app passes to the token endpoint.')
output clientId string = identity.properties.clientId
