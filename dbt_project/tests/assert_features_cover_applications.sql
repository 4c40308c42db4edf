-- The feature table has one row per stored application in every month. Returns the months whose
-- row counts differ.

with

applications as (

    select * from {{ ref('int_applications_accumulated') }}

),

features as (

    select * from {{ ref('application_features') }}

),

application_months as (

    select
        month,
        count(*) as application_rows
    from applications
    group by month

),

feature_months as (

    select
        month,
        count(*) as feature_rows
    from features
    group by month

),

final as (

    select
        application_months.application_rows,
        feature_months.feature_rows,
        coalesce(application_months.month, feature_months.month) as month
    from application_months
    full outer join feature_months
        on application_months.month = feature_months.month
    where
        application_months.month is null
        or feature_months.month is null
        or application_months.application_rows <> feature_months.feature_rows

)

select * from final
