extension microsoftGraphV1

metadata name = 'Graph permission grant'
metadata description = 'Grants the app identity the one Microsoft Graph application permission that the reminders need.'

@description('Required. Object (principal) id of the app identity that receives the app role.')
param principalId string

// Microsoft Graph's application id, which is the same in every tenant.
var graphAppId = '00000003-0000-0000-c000-000000000000'

// Security: the app lists access review instances and sends their reminders, which needs the
// ReadWrite permission. It is the only Graph permission the app gets.
var appRoleValue = 'AccessReview.ReadWrite.All'

resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

// The role id is looked up by its value on Graph's service principal rather than copied into the
// template. Only a role that applications can hold matches, never a delegated scope of the same name.
var matchingAppRoles = filter(graphServicePrincipal.appRoles, role => role.value == appRoleValue && contains(role.allowedMemberTypes, 'Application'))

resource appRoleAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: graphServicePrincipal.id
  appRoleId: matchingAppRoles[0].id
}

@description('Required. Value of the granted Graph app role.')
output appRoleValue string = appRoleValue

@description('Required. Id of the granted Graph app role in this tenant.')
output appRoleId string = appRoleAssignment.appRoleId
